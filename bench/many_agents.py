"""Benchmark: one manager under many simulated agents, each on its own real gRPC session.

    python bench/many_agents.py [--json] [--agents 1000] [--window 60] [--processes 4]

Agents are podium.agent.Agent instances with the in-memory FakeExecutor (tests/fakes.py), split
over --processes worker processes; each holds its own channel to the manager, heartbeats at the
manager's 1 s period and streams load. A service with one replica per agent gives them work.
Over --window seconds the bench counts nodes that left READY (each a node wrongly declared
suspect or down: every agent stays healthy) and measures the manager's cpu share and RSS. The
baseline is the same manager idle, with no agent, measured first in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import subprocess
import sys
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from bench._proc import cpu_seconds, status_value
from podium.lab.local import Cluster, eventually


async def run_agents(manager: str, prefix: str, count: int, lifetime: float) -> None:
    from podium.agent.agent import Agent
    from podium.lab.fakeexec import FakeExecutor

    agents = [Agent(manager=manager, name=f"{prefix}-{i:04d}", node_id=f"{prefix}-{i:04d}",
                    executor=FakeExecutor()) for i in range(count)]
    for agent in agents:
        await agent.start()
    try:
        await asyncio.sleep(lifetime)  # bounded: the parent stops us sooner
    finally:
        for agent in agents:
            await agent.stop()


def count_transitions(cluster: Cluster, stop: threading.Event, seen: list[str]) -> None:
    """Follows node events; records each node that left READY."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "podium.client.cli", "--manager", cluster.address, "events",
         "--kind", "node", "-o", "json"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if stop.is_set():
                break
            event = json.loads(line)
            state = event["object"].get("status", {}).get("state", "")
            if state in ("STATE_SUSPECT", "STATE_DOWN"):
                seen.append(f"{event['object']['description']['name']} {state}")
    finally:
        proc.terminate()
        proc.wait()


def cpu_share(pid: int, window: float) -> float:
    start_cpu, start = cpu_seconds(pid), time.monotonic()
    time.sleep(window)  # the measurement window itself, not a wait for a condition
    return 100 * (cpu_seconds(pid) - start_cpu) / (time.monotonic() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--worker", nargs=4, metavar=("MANAGER", "PREFIX", "COUNT", "LIFETIME"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        manager, prefix, count, lifetime = args.worker
        asyncio.run(run_agents(manager, prefix, int(count), float(lifetime)))
        return 0
    if not (1 <= args.agents <= 5000 and 1 <= args.window <= 600 and 1 <= args.processes <= 16):
        parser.error("1 <= --agents <= 5000, 1 <= --window <= 600, 1 <= --processes <= 16")

    import tempfile
    with tempfile.TemporaryDirectory(prefix="podium-bench-") as tmp:
        cluster = Cluster(pathlib.Path(tmp))
        workers: list[subprocess.Popen[bytes]] = []
        stop = threading.Event()
        try:
            cluster.start_manager()
            pid = cluster.procs["manager"].pid
            idle_cpu = cpu_share(pid, 5.0)
            lifetime = args.window + 300
            per = -(-args.agents // args.processes)
            for p in range(args.processes):
                count = min(per, args.agents - p * per)
                workers.append(subprocess.Popen(
                    [sys.executable, __file__, "--worker", cluster.address, f"sim{p}",
                     str(count), str(lifetime)]))
            started = time.monotonic()
            eventually(lambda: sum(n["state"] == "ready" for n in cluster.json("nodes"))
                       == args.agents, timeout=240, interval=1, what="all agents ready")
            ready_s = time.monotonic() - started
            spec = pathlib.Path(tmp) / "stack.yaml"
            spec.write_text(f"services:\n  sim:\n    image: fake/app:1\n    deploy:\n"
                            f"      replicas: {args.agents}\n")
            cluster.ok("deploy", "-f", str(spec), "--timeout", "300")
            seen: list[str] = []
            follower = threading.Thread(target=count_transitions, args=(cluster, stop, seen))
            follower.start()
            busy_cpu = cpu_share(pid, args.window)
            rss_mb = status_value(pid, "VmRSS") / 1024
            ready_now = sum(n["state"] == "ready" for n in cluster.json("nodes"))
        finally:
            stop.set()
            for worker in workers:
                worker.terminate()
            for worker in workers:
                worker.wait(timeout=60)
            cluster.close()
    follower.join(timeout=10)
    figures = {
        "agents_count": args.agents,
        "window_s": args.window,
        "all_ready_after_s": round(ready_s, 1),
        "wrongly_not_ready_count": len(seen),
        "ready_at_end_count": ready_now,
        "manager_cpu_share_pct": round(busy_cpu, 1),
        "manager_idle_cpu_share_pct": round(idle_cpu, 1),
        "manager_rss_mb": round(rss_mb, 1),
    }
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"{args.agents} simulated agents over {args.processes} processes, "
              f"{args.window:g} s window (all ready after {ready_s:.1f} s)")
        print(f"{'':34}{'manager cpu % of 1 core':>26}")
        print(f"{'baseline: idle, no agents':34}{idle_cpu:>26.1f}")
        print(f"{'with the agents heartbeating':34}{busy_cpu:>26.1f}")
        print(f"nodes that left READY during the window: {len(seen)} (goal 0) {seen[:5]}")
        print(f"ready at the end: {ready_now}/{args.agents}; manager RSS {rss_mb:.0f} MB")
    return 0 if not seen else 1


if __name__ == "__main__":
    sys.exit(main())
