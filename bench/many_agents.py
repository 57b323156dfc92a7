"""Benchmark: one manager under many simulated agents, each on its own real gRPC session, with
mutual TLS (the design) next to plaintext (the previous design) in the same run.

    python bench/many_agents.py [--json] [--agents 1000] [--window 60] [--processes 4]
                                [--design both|tls|plaintext]

Agents are podium.agent.Agent instances with the in-memory FakeExecutor, split over --processes
worker processes; each holds its own channel to the manager, heartbeats at the manager's 1 s
period and streams load. With TLS, every agent first joins at once: its own key, a signing
request over the join port with the token, then its session with its node certificate. A
service with one replica per agent gives them work. Over --window seconds the bench counts nodes
that left READY (each a node wrongly declared suspect or down: every agent stays healthy) and
measures the manager's cpu share and RSS; the manager idle, with no agent, is measured first.
The plaintext manager is the same code with TLS off (`Manager(plaintext=True)`, which only
in-process tests and this baseline use: the daemon has no such flag).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import grpc

from bench._proc import cpu_seconds, status_value
from podium.lab.local import eventually, free_port, secure_channel
from podium.v1 import control, control_grpc, objects

# The previous design's manager: plaintext, same code otherwise.
PLAIN_MANAGER = """
import asyncio, sys
from podium.manager.manager import Manager
from podium.rules import daemon
asyncio.run(daemon.serve_until_signalled(
    Manager(listen=sys.argv[1], data_dir=sys.argv[2], plaintext=True,
            heartbeats_per_second=float(sys.argv[3]))))
"""


async def run_agents(manager: str, join: str, token: str, root: pathlib.Path, prefix: str,
                     count: int, lifetime: float) -> None:
    from podium.agent.agent import Agent
    from podium.agent.certificate import NodeCertificate
    from podium.lab.fakeexec import FakeExecutor
    from podium.rules.certs import JoinToken

    names = [f"{prefix}-{i:04d}" for i in range(count)]
    certificates: list[NodeCertificate | None] = [None] * count
    if token != "-":
        certificates = [NodeCertificate(data_dir=root / name, node_id=name, manager=manager,
                                        join_address=join, token=JoinToken.parse(token))
                        for name in names]
        started = time.monotonic()
        await asyncio.gather(*(c.ensure_with_retries() for c in certificates if c))
        print(f"{prefix}: {count} agents joined in {time.monotonic() - started:.1f} s",
              file=sys.stderr)
    agents = [Agent(manager=manager, name=name, node_id=name, executor=FakeExecutor(),
                    certificate=certificate)
              for name, certificate in zip(names, certificates, strict=True)]
    for agent in agents:
        await agent.start()
    try:
        await asyncio.sleep(lifetime)  # bounded: the parent stops us sooner
    finally:
        for agent in agents:
            await agent.stop()


def count_transitions(channel: grpc.Channel, stop: threading.Event, seen: list[str]) -> None:
    """Follows node events; records each node that left READY."""
    left = (objects.NodeStatus.STATE_SUSPECT, objects.NodeStatus.STATE_AGENT_DOWN,
            objects.NodeStatus.STATE_DOWN)
    call = control_grpc.ControlStub(channel).WatchEvents(
        control.WatchEventsRequest(kinds=["node"]))
    try:
        for event in call:
            if stop.is_set():
                break
            if event.node.status.state in left:
                seen.append(f"{event.node.description.name} "
                            f"{objects.NodeStatus.State.Name(event.node.status.state)}")
    except grpc.RpcError:
        pass  # cancelled at the end


def cpu_share(pid: int, window: float) -> float:
    start_cpu, start = cpu_seconds(pid), time.monotonic()
    time.sleep(window)  # the measurement window itself, not a wait for a condition
    return 100 * (cpu_seconds(pid) - start_cpu) / (time.monotonic() - start)


def measure(design: str, agents: int, window: float, processes: int, *, tasks_per_agent: int,
            per_second: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="podium-bench-") as tmp:
        root = pathlib.Path(tmp)
        address = f"127.0.0.1:{free_port()}"
        join = f"127.0.0.1:{free_port()}"
        credentials = root / "admin.credentials"
        if design == "tls":
            command = [sys.executable, "-m", "podium.manager", "--listen", address,
                       "--join-listen", join, "--admin-credentials", str(credentials),
                       "--metrics-listen", "off", "--dashboard", "off",
                       "--heartbeats-per-second", str(per_second),
                       "--data-dir", str(root / "manager")]
        else:
            command = [sys.executable, "-c", PLAIN_MANAGER, address, str(root / "manager"),
                       str(per_second)]
        with open(root / "manager.log", "wb") as log:
            manager = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        workers: list[subprocess.Popen[bytes]] = []
        stop = threading.Event()
        seen: list[str] = []
        follower: threading.Thread | None = None
        channel: grpc.Channel | None = None
        try:
            if design == "tls":
                eventually(credentials.exists, timeout=30, what="manager up")
                channel = secure_channel(address, credentials, aio=False)
            else:
                channel = grpc.insecure_channel(address)
            grpc.channel_ready_future(channel).result(timeout=30)
            api = control_grpc.ControlStub(channel)
            token = api.GetJoinToken(control.GetJoinTokenRequest()).token \
                if design == "tls" else "-"

            def ready() -> int:
                nodes = api.ListNodes(control.ListNodesRequest(), timeout=30).nodes
                return sum(n.status.state == objects.NodeStatus.STATE_READY for n in nodes)

            idle_cpu = cpu_share(manager.pid, 5.0)
            lifetime = window + 300
            per = -(-agents // processes)
            started = time.monotonic()
            for p in range(processes):
                count = min(per, agents - p * per)
                workers.append(subprocess.Popen(
                    [sys.executable, __file__, "--worker", address, join, token, tmp,
                     f"sim{p}", str(count), str(lifetime)]))
            eventually(lambda: ready() == agents, timeout=240, interval=0.5,
                       what="all agents ready")
            ready_s = time.monotonic() - started
            tasks = agents * tasks_per_agent
            spec = objects.ServiceSpec(name="sim", replicas=tasks)
            spec.container.image = "fake/app:1"
            api.CreateService(control.CreateServiceRequest(spec=spec), timeout=30)
            eventually(lambda: sum(t.status.state == objects.TASK_STATE_RUNNING for t in
                                   api.ListTasks(control.ListTasksRequest(service="sim"),
                                                 timeout=120).tasks) == tasks,
                       timeout=300, interval=1, what="every replica running")
            running_s = time.monotonic() - started - ready_s
            follower = threading.Thread(target=count_transitions, args=(channel, stop, seen))
            follower.start()
            busy_cpu = cpu_share(manager.pid, window)
            rss_mb = status_value(manager.pid, "VmRSS") / 1024
            ready_now = ready()
        finally:
            stop.set()
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(timeout=60)
            if channel is not None:
                channel.close()
            if follower is not None:
                follower.join(timeout=10)
            manager.send_signal(signal.SIGTERM)
            manager.wait(timeout=30)
            if os.environ.get("KEEP_MANAGER_LOG"):  # for a post-mortem: the log outlives the run
                (root / "manager.log").replace(os.environ["KEEP_MANAGER_LOG"])
    return {"all_ready_after_s": round(ready_s, 1), "all_running_after_s": round(running_s, 1),
            "wrongly_not_ready_count": len(seen),
            "wrongly_not_ready": seen[:5], "ready_at_end_count": ready_now,
            "manager_cpu_share_pct": round(busy_cpu, 1),
            "manager_idle_cpu_share_pct": round(idle_cpu, 1),
            "manager_rss_mb": round(rss_mb, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--design", choices=("both", "tls", "plaintext"), default="both")
    parser.add_argument("--tasks-per-agent", type=int, default=1,
                        help="replicas of the one service per agent (default 1)")
    parser.add_argument("--heartbeats-per-second", type=float, default=1500.0,
                        help="the manager's flag: 0 keeps every period at 1 s (the previous "
                        "design); default 1500")
    parser.add_argument("--worker", nargs=7, help=argparse.SUPPRESS,
                        metavar=("MANAGER", "JOIN", "TOKEN", "ROOT", "PREFIX", "COUNT",
                                 "LIFETIME"))
    args = parser.parse_args()
    if args.worker:
        manager, join, token, root, prefix, count, lifetime = args.worker
        asyncio.run(run_agents(manager, join, token, pathlib.Path(root), prefix, int(count),
                               float(lifetime)))
        return 0
    if not (1 <= args.agents <= 5000 and 1 <= args.window <= 600 and 1 <= args.processes <= 16
            and 1 <= args.tasks_per_agent <= 100 and args.heartbeats_per_second >= 0):
        parser.error("1 <= --agents <= 5000, 1 <= --window <= 600, 1 <= --processes <= 16, "
                     "1 <= --tasks-per-agent <= 100, --heartbeats-per-second >= 0")
    designs = ["plaintext", "tls"] if args.design == "both" else [args.design]
    results = {d: measure(d, args.agents, args.window, args.processes,
                          tasks_per_agent=args.tasks_per_agent,
                          per_second=args.heartbeats_per_second) for d in designs}
    figures: dict[str, Any] = {"agents_count": args.agents, "window_s": args.window,
                               "tasks_count": args.agents * args.tasks_per_agent,
                               "heartbeats_per_second_limit": args.heartbeats_per_second}
    for design, found in results.items():
        prefix = "" if design == "tls" else "plaintext_"
        figures.update({f"{prefix}{k}": v for k, v in found.items() if k != "wrongly_not_ready"})
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"{args.agents} simulated agents over {args.processes} processes, "
              f"{args.window:g} s window (cpu: % of one core)")
        rows = [("all agents ready after (s)", "all_ready_after_s"),
                ("then every task running after (s)", "all_running_after_s"),
                ("nodes that left READY (goal 0)", "wrongly_not_ready_count"),
                ("ready at the end", "ready_at_end_count"),
                ("manager cpu, agents heartbeating", "manager_cpu_share_pct"),
                ("manager cpu, idle (no agents)", "manager_idle_cpu_share_pct"),
                ("manager RSS (MB)", "manager_rss_mb")]
        print(f"{'':36}" + "".join(f"{d:>14}" for d in designs)
              + ("" if len(designs) < 2 else f"{'tls/plain':>12}"))
        for label, key in rows:
            line = f"{label:36}" + "".join(f"{results[d][key]:>14}" for d in designs)
            if len(designs) == 2 and results["plaintext"][key]:
                line += f"{results['tls'][key] / results['plaintext'][key]:>11.2f}x"
            print(line)
        for design in designs:
            if results[design]["wrongly_not_ready"]:
                print(f"{design}: left READY: {results[design]['wrongly_not_ready']}")
    return 0 if all(r["wrongly_not_ready_count"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
