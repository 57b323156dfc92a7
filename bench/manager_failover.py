"""Benchmark: a leader manager killed (-9) among three on etcd, next to one SQLite manager killed
and started again by hand, in the same run.

    python bench/manager_failover.py [--json] [--kills 5] [--agents 3] [--replicas 6]
                                     [--mesh-kills 2] [--no-mesh]

Timing (the fake executor): 3 etcd members, 3 manager processes on them (lab/managers.py),
--agents agents in this process (podium.agent.Agent on the in-memory FakeExecutor, every manager
given to each), a service of --replicas. Each of --kills rounds: kill -9 the leader, then at once
scale the service up by one through a client given every manager (it finds the new leader by
itself); reported: seconds from the kill to a new leader (the first manager that serves GetLoad,
which only the leader does) and to the new task reaching RUNNING, dispatched by the new leader
(median and max), and the tasks restarted or replaced (goal 0). The killed manager is started
again as a follower before the next round.

Baseline: one manager on SQLite with the same agents; killed -9 and started again at once (as
fast as an operator or systemd could), the same scale-up timed from the kill.

Mesh (the real engine, unless --no-mesh): the three managers and one real agent on the local
engine, a service of 2 replicas publishing port 8088 (busybox httpd); an HTTP client loops
requests to 127.0.0.1:8088 through the agent's mesh, one new connection each, while the leader is
killed --mesh-kills times; reported: requests sent and failed (goal 0).

`--json`: one JSON object, keys ending in their units (_s, _count).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import pathlib
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from podium.agent.agent import Agent
from podium.agent.certificate import NodeCertificate
from podium.lab.etcd import EtcdCluster
from podium.lab.fakeexec import FakeExecutor
from podium.lab.faultcheck import HttpLoop
from podium.lab.local import IMAGE, ensure_image, eventually
from podium.lab.managers import ManagerGroup
from podium.rules.certs import JoinToken
from podium.v1 import objects

RUNNING = objects.TASK_STATE_RUNNING
MESH_PORT = 8088
WEB = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www"


def running(group: ManagerGroup, service: str) -> dict[str, tuple[str, int]]:
    """Running tasks: id -> (node, restarts)."""
    with group.client() as client:
        return {t.id: (t.node_id, t.status.restarts) for t in client.tasks(service=service)
                if t.status.state == RUNNING and t.desired_state == RUNNING}


async def start_agents(group: ManagerGroup, count: int, root: pathlib.Path) -> list[Agent]:
    token = JoinToken.parse((await asyncio.to_thread(group.token_file)).read_text())
    joins = ",".join(f"127.0.0.1:{port}" for port in group.join_ports)
    agents = []
    for i in range(count):
        name = f"fake{i}"
        certificate = NodeCertificate(data_dir=root / name, node_id=f"node-{name}",
                                      manager=group.address, join_address=joins, token=token)
        await certificate.ensure()
        agent = Agent(manager=group.address, name=name, node_id=f"node-{name}",
                      executor=FakeExecutor(), certificate=certificate)
        await agent.start()
        agents.append(agent)
    return agents


def deploy(group: ManagerGroup, root: pathlib.Path, replicas: int) -> None:
    stack = root / "web.yaml"
    stack.write_text(f"services:\n  web:\n    image: app:1\n    deploy:\n"
                     f"      replicas: {replicas}\n")
    group.ok("deploy", "-f", str(stack))
    eventually(lambda: len(running(group, "web")) == replicas, timeout=60,
               what=f"{replicas} tasks running")


def scale_and_time(group: ManagerGroup, killed_at: float, replicas: int) -> tuple[float, float]:
    """Scales web to `replicas` through every manager; (seconds from the kill to a leader, to
    the new task running)."""
    leader_at = [0.0]

    def find_leader() -> None:
        eventually(lambda: group.leader() is not None, timeout=60, interval=0.02,
                   what="a leader")
        leader_at[0] = time.monotonic()

    finder = threading.Thread(target=find_leader)
    finder.start()
    from podium.client import ManagerUnreachable

    deadline = time.monotonic() + 60
    with group.client() as client:
        client.timeout = 60.0  # retried on the managers until one leads
        while True:
            try:
                client.scale("web", replicas)
                break
            except ManagerUnreachable:  # one manager, still starting: try again, as users do
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
    eventually(lambda: len(running(group, "web")) == replicas, timeout=60, interval=0.02,
               what="the new task running")
    ran_at = time.monotonic()
    finder.join()
    return leader_at[0] - killed_at, ran_at - killed_at


def unchanged(before: dict[str, tuple[str, int]], after: dict[str, tuple[str, int]]) -> int:
    """Tasks of `before` that were replaced or restarted in `after`."""
    return sum(1 for task_id, seen in before.items() if after.get(task_id) != seen)


async def timing(root: pathlib.Path, *, kills: int, agents: int, replicas: int) -> dict[str, Any]:
    leader_s: list[float] = []
    running_s: list[float] = []
    restarted = 0
    with EtcdCluster(3) as etcd:
        group = ManagerGroup(root / "ha", etcd)
        (root / "ha").mkdir()
        await asyncio.to_thread(group.start)
        fakes: list[Agent] = []
        try:
            fakes = await start_agents(group, agents, root / "ha")
            await asyncio.to_thread(deploy, group, root / "ha", replicas)
            target = replicas
            for _ in range(kills):
                before = await asyncio.to_thread(running, group, "web")
                leader = await asyncio.to_thread(group.leader)
                assert leader is not None
                killed_at = group.kill(f"manager{leader}")
                target += 1
                elected, ran = await asyncio.to_thread(scale_and_time, group, killed_at, target)
                leader_s.append(elected)
                running_s.append(ran)
                restarted += unchanged(before, await asyncio.to_thread(running, group, "web"))
                group.start_manager(leader)
                await asyncio.sleep(2.0)  # the restarted manager is up and following
        finally:
            for agent in fakes:
                await agent.stop()
            group.close()
    return {"leader_s": leader_s, "running_s": running_s, "restarted": restarted}


async def baseline(root: pathlib.Path, *, agents: int, replicas: int) -> dict[str, Any]:
    (root / "sqlite").mkdir()
    group = ManagerGroup(root / "sqlite", None, size=1)
    await asyncio.to_thread(group.start)
    fakes: list[Agent] = []
    try:
        fakes = await start_agents(group, agents, root / "sqlite")
        await asyncio.to_thread(deploy, group, root / "sqlite", replicas)
        before = await asyncio.to_thread(running, group, "web")
        killed_at = group.kill("manager0")
        group.start_manager(0)
        _, ran = await asyncio.to_thread(scale_and_time, group, killed_at, replicas + 1)
        restarted = unchanged(before, await asyncio.to_thread(running, group, "web"))
    finally:
        for agent in fakes:
            await agent.stop()
        group.close()
    return {"running_s": ran, "restarted": restarted}


def mesh(root: pathlib.Path, *, kills: int) -> dict[str, Any]:
    ensure_image()
    (root / "mesh").mkdir()
    with EtcdCluster(3) as etcd, ManagerGroup(root / "mesh", etcd) as group:
        group.start_agent("h1")
        stack = root / "mesh" / "web.yaml"
        stack.write_text(f"""
services:
  web:
    image: {IMAGE}
    command: ["sh", "-c", "{WEB}"]
    init: true
    ports: ["{MESH_PORT}:80"]
    deploy:
      replicas: 2
""")
        group.ok("deploy", "-f", str(stack))
        url = f"http://127.0.0.1:{MESH_PORT}/"

        def serves() -> bool:
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    return answer.status == 200
            except OSError:
                return False

        eventually(serves, timeout=60, what="the service answering through the mesh")
        with HttpLoop(url) as load:
            for _ in range(kills):
                leader = group.leader()
                assert leader is not None
                group.kill(f"manager{leader}")
                eventually(lambda: group.leader() is not None, timeout=30, interval=0.05,
                           what="a new leader")
                eventually(lambda: group.node_state("h1") == "ready", timeout=30,
                           what="h1's session on the new leader")
                group.start_manager(leader)
                time.sleep(2.0)
        return {"sent": load.sent, "failed": load.failed,
                "failures": [f"{at:.3f} {err}" for at, err in load.failures[:10]]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--kills", type=int, default=5)
    p.add_argument("--agents", type=int, default=3)
    p.add_argument("--replicas", type=int, default=6)
    p.add_argument("--mesh-kills", type=int, default=2)
    p.add_argument("--no-mesh", action="store_true")
    args = p.parse_args()
    # The agents in this process log every session they lose on purpose here.
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="podium-mfailover-") as tmp:
        root = pathlib.Path(tmp)
        ha = asyncio.run(timing(root, kills=args.kills, agents=args.agents,
                                replicas=args.replicas))
        base = asyncio.run(baseline(root, agents=args.agents, replicas=args.replicas))
        mesh_figures = None if args.no_mesh else mesh(root, kills=args.mesh_kills)
    result: dict[str, Any] = {
        "kills_count": args.kills,
        "new_leader_median_s": round(statistics.median(ha["leader_s"]), 3),
        "new_leader_max_s": round(max(ha["leader_s"]), 3),
        "dispatching_median_s": round(statistics.median(ha["running_s"]), 3),
        "dispatching_max_s": round(max(ha["running_s"]), 3),
        "dispatching_each_s": [round(x, 3) for x in ha["running_s"]],
        "tasks_restarted_count": ha["restarted"],
        "sqlite_restart_dispatching_s": round(base["running_s"], 3),
        "sqlite_tasks_restarted_count": base["restarted"],
    }
    if mesh_figures is not None:
        result.update(mesh_kills_count=args.mesh_kills,
                      mesh_requests_count=mesh_figures["sent"],
                      mesh_failed_requests_count=mesh_figures["failed"])
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"leader killed (-9) {args.kills} times among 3 managers on etcd "
          f"({args.agents} agents, fake executor)")
    rows = [
        ("kill -> new leader", f"{result['new_leader_median_s']:.2f} s",
         f"{result['new_leader_max_s']:.2f} s", "-"),
        ("kill -> new task running (leader dispatching)",
         f"{result['dispatching_median_s']:.2f} s", f"{result['dispatching_max_s']:.2f} s",
         f"{result['sqlite_restart_dispatching_s']:.2f} s"),
        ("tasks restarted or replaced", str(result["tasks_restarted_count"]), "",
         str(result["sqlite_tasks_restarted_count"])),
    ]
    if mesh_figures is not None:
        rows.append((f"requests through the mesh failed ({args.mesh_kills} kills)",
                     f"{mesh_figures['failed']} of {mesh_figures['sent']}", "", "-"))
    print(f"{'':48} {'median':>10} {'max':>8} {'SQLite, restarted at once':>26}")
    for name, median, worst, base_figure in rows:
        print(f"{name:48} {median:>10} {worst:>8} {base_figure:>26}")
    if mesh_figures is not None and mesh_figures["failures"]:
        print("first failures:", *mesh_figures["failures"], sep="\n  ")
    return 0


if __name__ == "__main__":
    sys.exit(main())
