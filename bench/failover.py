"""Benchmark: what an agent restart, an agent crash, a power cut and a partition cost, next to
Docker Swarm's failover on the same simulated hosts in the same run.

    python bench/failover.py [--json] [--trials 3] [--replicas 6] [--away 5] [--swarm-trials N]

Three simulated hosts (lab/hosts.py: network namespaces, each with its own engine and
agent); a service of --replicas (ingress port 8080, served by every host's mesh) spread over
them. Each trial, on one cluster:

- agent restart: a client loops requests through h1's mesh port (one new connection each,
  bounded in count and time) while h3's agent gets SIGTERM and is started again --away seconds
  later. Reported: tasks replaced (goal 0) and failed requests (goal 0).
- agent killed: the same with kill -9.
- power loss: h3's link goes down, then every process of h3 is killed (no FIN reaches anyone).
  Reported: time until --replicas run on h1 and h2 (goal <= 3 s median), polling the Control API
  every 20 ms.
then, on a fresh cluster, a partition (h3's link down, its processes alive): the same time. And on
a fresh cluster, Docker Swarm (the engines' swarm mode: h1 manager, h2 and h3 workers, a service
of --replicas created with --no-resolve-image, nothing published since its IPVS mesh does not work
in this kernel): the same power cut of h3, timed until --replicas run on h1 and h2 (polling h1's
engine API every 100 ms). Swarm's default dispatcher heartbeat is 5 s.

`--json` prints the figures with names ending in their units (_s, _count, _list), and every
trial. The worst trial is the figure for counts (goal 0), the median for times.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import pathlib
import signal
import socket
import statistics
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from podium.lab.hosts import HostCluster, hostname_stack, requests_result
from podium.lab.local import IMAGE, eventually
from podium.v1 import control, control_grpc, objects

PORT = 8080
# Documented defaults, for scale: Swarm marks a node down after its heartbeat (5 s) times a grace
# multiplier; Nomad's heartbeat TTL plus grace ~20-30 s; Kubernetes' node-monitor-grace-period
# 40 s plus the 300 s default toleration before eviction.
ANCHORS_S = {"Nomad": 25.0, "Kubernetes": 340.0}
GOAL_POWER_LOSS_S = 3.0


@contextlib.contextmanager
def podium_cluster(root: pathlib.Path, replicas: int) -> Iterator[tuple[HostCluster, Any]]:
    with HostCluster(root, hosts=3) as hosts:
        hosts.deploy(hostname_stack(replicas=replicas, port=PORT))
        with hosts.secure_channel(aio=False) as channel:
            yield hosts, control_grpc.ControlStub(channel)


def tasks(stub: Any) -> list[objects.Task]:
    return list(stub.ListTasks(control.ListTasksRequest(service="web"), timeout=5).tasks)


def running(stub: Any) -> list[objects.Task]:
    """The service's tasks that are meant to run and do."""
    return [t for t in tasks(stub) if t.desired_state <= objects.TASK_STATE_RUNNING
            and t.status.state == objects.TASK_STATE_RUNNING]


def running_off(stub: Any, node_id: str, replicas: int) -> bool:
    found = running(stub)
    return len(found) == replicas and all(t.node_id != node_id for t in found)


def node_id(hosts: HostCluster, name: str) -> str:
    return str(next(n["id"] for n in hosts.json("nodes") if n["name"] == name))


def agent_restart(hosts: HostCluster, stub: Any, sig: int, away: float,
                  replicas: int) -> dict[str, Any]:
    """h3's agent stopped with `sig` and started `away` s later, under a client through h1."""
    def answering() -> int:
        return len(requests_result(hosts.start_mesh_requests("h1", PORT, seconds=1.0))["answers"])

    eventually(lambda: answering() == replicas, timeout=30,
               what="every replica answering through h1")
    before = {t.id for t in tasks(stub)}
    client = hosts.start_mesh_requests("h1", PORT, seconds=away + 8)
    time.sleep(1)  # deliberate: the client runs against every replica first
    stopped = time.monotonic()
    hosts.stop_agent("h3", sig=sig)
    time.sleep(max(0.0, away - (time.monotonic() - stopped)))  # deliberate: the agent is away
    hosts.start_agent("h3")
    back = time.monotonic() - stopped
    result = requests_result(client)
    eventually(lambda: len(running(stub)) == replicas, timeout=30,
               what="all replicas running again")
    replaced = len({t.id for t in tasks(stub)} - before)
    return {"tasks_replaced_count": replaced, "failed_requests_count": len(result["failures"]),
            "requests_count": result["count"], "away_s": round(back, 2)}


def lose_host(hosts: HostCluster, stub: Any, how: Callable[[str], None],
              replicas: int) -> float:
    node = node_id(hosts, "h3")
    start = time.monotonic()
    how("h3")
    eventually(lambda: running_off(stub, node, replicas), timeout=60, interval=0.02,
               what="replicas running on h1 and h2")
    return time.monotonic() - start


# -- Docker Swarm on the same simulated hosts ------------------------------------------------


def engine_get(hosts: HostCluster, host: str, path: str) -> Any:
    """GET from the host's engine API over its unix socket (faster than the docker CLI)."""
    conn = http.client.HTTPConnection("docker", timeout=5)
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(5)
    sock.connect(str(hosts.host(host).socket))
    conn.sock = sock
    try:
        conn.request("GET", path)
        reply = conn.getresponse()
        return json.loads(reply.read())
    finally:
        conn.close()


def swarm_running_tasks(hosts: HostCluster, **filters: list[str]) -> list[dict[str, Any]]:
    """The running tasks of Swarm's service web that match `filters`, as h1's engine shows them."""
    query = urllib.parse.quote(json.dumps({"service": ["web"], **filters}))
    found: list[dict[str, Any]] = engine_get(hosts, "h1", f"/tasks?filters={query}")
    return [t for t in found if t["Status"]["State"] == "running"]


def swarm_running(hosts: HostCluster, away_from: str, replicas: int) -> bool:
    found = swarm_running_tasks(hosts, **{"desired-state": ["running"]})
    return len(found) == replicas and all(t["NodeID"] != away_from for t in found)


def swarm_trial(root: pathlib.Path, replicas: int) -> float:
    with HostCluster(root, hosts=3) as hosts:
        h1 = hosts.host("h1").address
        hosts.docker("h1", "swarm", "init", "--advertise-addr", h1)
        token = hosts.docker("h1", "swarm", "join-token", "-q", "worker").strip()
        for name in ("h2", "h3"):
            hosts.docker(name, "swarm", "join", "--token", token, "--advertise-addr",
                         hosts.host(name).address, f"{h1}:2377")
        hosts.docker("h1", "service", "create", "--detach", "--no-resolve-image", "--name",
                     "web", "--replicas", str(replicas), "--stop-grace-period", "1s", IMAGE,
                     "sh", "-c", "mkdir -p /www && exec httpd -f -p 80 -h /www")
        h3 = hosts.docker("h3", "info", "--format", "{{.Swarm.NodeID}}").strip()

        def spread() -> bool:
            found = swarm_running_tasks(hosts)
            return len(found) == replicas and any(t["NodeID"] == h3 for t in found)

        eventually(spread, timeout=60, interval=0.1, what="swarm service running on h1-h3")
        start = time.monotonic()
        hosts.power_off("h3")
        eventually(lambda: swarm_running(hosts, h3, replicas), timeout=120, interval=0.1,
                   what="swarm replicas running on h1 and h2")
        return time.monotonic() - start


# -- the run ---------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--swarm-trials", type=int, default=None,
                        help="trials of Docker Swarm's power cut (default: --trials)")
    parser.add_argument("--replicas", type=int, default=6)
    parser.add_argument("--away", type=float, default=5.0,
                        help="seconds an agent stays stopped before it is started again")
    args = parser.parse_args()
    swarm_trials = args.trials if args.swarm_trials is None else args.swarm_trials
    if not (1 <= args.trials <= 20 and 0 <= swarm_trials <= 20 and 3 <= args.replicas <= 30
            and 0 <= args.away <= 25):
        parser.error("1 <= --trials <= 20, 0 <= --swarm-trials <= 20, 3 <= --replicas <= 30, "
                     "0 <= --away <= 25 (within the manager's 30 s restart grace)")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # clusters torn down on SIGTERM
    restart: list[dict[str, Any]] = []
    killed: list[dict[str, Any]] = []
    power: list[float] = []
    partition: list[float] = []
    swarm: list[float] = []
    started = time.monotonic()
    for i in range(max(args.trials, swarm_trials)):
        if i < args.trials:
            with tempfile.TemporaryDirectory(prefix="podium-failover-") as tmp:
                with podium_cluster(pathlib.Path(tmp) / "hosts", args.replicas) as (hosts, stub):
                    restart.append(agent_restart(hosts, stub, signal.SIGTERM, args.away,
                                                 args.replicas))
                    killed.append(agent_restart(hosts, stub, signal.SIGKILL, args.away,
                                                args.replicas))
                    power.append(lose_host(hosts, stub, hosts.power_off, args.replicas))
            with tempfile.TemporaryDirectory(prefix="podium-failover-") as tmp:
                with podium_cluster(pathlib.Path(tmp) / "hosts", args.replicas) as (hosts, stub):
                    partition.append(lose_host(hosts, stub, hosts.partition, args.replicas))
            print(f"trial {i + 1}: restart {restart[-1]}, killed {killed[-1]}, power loss "
                  f"{power[-1]:.2f} s, partition {partition[-1]:.2f} s", file=sys.stderr,
                  flush=True)
        if i < swarm_trials:
            with tempfile.TemporaryDirectory(prefix="podium-failover-swarm-") as tmp:
                swarm.append(swarm_trial(pathlib.Path(tmp) / "hosts", args.replicas))
            print(f"trial {i + 1}: swarm power loss {swarm[-1]:.2f} s", file=sys.stderr,
                  flush=True)

    def median(xs: list[float]) -> float | None:
        return round(statistics.median(xs), 3) if xs else None

    figures = {
        "agent_restart_tasks_replaced_count": max(r["tasks_replaced_count"] for r in restart),
        "agent_restart_failed_requests_count": max(r["failed_requests_count"] for r in restart),
        "agent_killed_tasks_replaced_count": max(r["tasks_replaced_count"] for r in killed),
        "agent_killed_failed_requests_count": max(r["failed_requests_count"] for r in killed),
        "agent_away_s": args.away,
        "power_loss_to_running_median_s": median(power),
        "partition_to_running_median_s": median(partition),
        "swarm_power_loss_to_running_median_s": median(swarm),
        "power_loss_goal_s": GOAL_POWER_LOSS_S,
        "agent_restart_trials_list": restart,
        "agent_killed_trials_list": killed,
        "power_loss_trials_s": [round(x, 3) for x in power],
        "partition_trials_s": [round(x, 3) for x in partition],
        "swarm_power_loss_trials_s": [round(x, 3) for x in swarm],
        **{f"{name.lower()}_documented_default_s": s for name, s in ANCHORS_S.items()},
        "replicas_count": args.replicas,
        "bench_wall_s": round(time.monotonic() - started, 1),
    }
    if args.json:
        print(json.dumps(figures))
        return 0

    def trials(xs: list[float]) -> str:
        return ", ".join(f"{x:.2f}" for x in xs)

    def counts(rows: list[dict[str, Any]], key: str) -> str:
        return ", ".join(str(r[key]) for r in rows)

    print(f"failover of {args.replicas} replicas over 3 simulated hosts, "
          f"{args.trials} trials (Swarm: {swarm_trials})")
    print(f"{'case':34}{'figure':>20}   trials")
    print(f"{'agent restart (SIGTERM, back ' + f'{args.away:g} s)':34}"
          f"{str(figures['agent_restart_tasks_replaced_count']) + ' replaced':>20}   "
          f"{counts(restart, 'tasks_replaced_count')} (goal 0)")
    print(f"{'':34}{str(figures['agent_restart_failed_requests_count']) + ' failed req':>20}   "
          f"{counts(restart, 'failed_requests_count')} of {counts(restart, 'requests_count')}")
    print(f"{'agent killed (kill -9, back ' + f'{args.away:g} s)':34}"
          f"{str(figures['agent_killed_tasks_replaced_count']) + ' replaced':>20}   "
          f"{counts(killed, 'tasks_replaced_count')} (goal 0)")
    print(f"{'':34}{str(figures['agent_killed_failed_requests_count']) + ' failed req':>20}   "
          f"{counts(killed, 'failed_requests_count')} of {counts(killed, 'requests_count')}")
    print(f"{'host power loss -> running':34}{median(power) or 0:>18.2f} s   {trials(power)} "
          f"(goal <= {GOAL_POWER_LOSS_S:g} s median)")
    print(f"{'partition -> running':34}{median(partition) or 0:>18.2f} s   {trials(partition)}")
    if swarm:
        print(f"{'Docker Swarm power loss -> running':34}{median(swarm) or 0:>18.2f} s   "
              f"{trials(swarm)} (measured, same hosts)")
    for name, seconds in ANCHORS_S.items():
        print(f"{name + ' (documented default)':34}{seconds:>18.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
