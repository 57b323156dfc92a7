"""Benchmark: resident memory and CPU share of an idle manager and agent, against a bare floor.

    .venv/bin/python bench/idle_rss.py [--json] [--no-with-service] [--settle S] [--window S]

The bench starts its own manager and one agent (podium.lab.local.Cluster: real processes,
`python -m podium.client.cli ...`, in a temp dir) on the local engine, waits until the node
is ready and, unless --no-with-service, until a 3-replica service of podium/web:latest runs.
It then lets everything settle (--settle, default 5 s) and, over an idle window (--window,
default 10 s) in which the bench sends nothing to the manager:

- RSS: VmRSS from /proc/PID/status, sampled once a second; the figure is the median sample.
  VmHWM (the peak since start) is shown in the table too.
- CPU share: (utime + stime) deltas from /proc/PID/stat over the window, divided by the window's
  wall time, in percent of one core.

Baseline in the same run and window: a bare `python -c "import asyncio, grpc, grpc.aio; ..."`
process idling in asyncio.sleep (the interpreter + grpc floor), so that RSS over the floor is
what Podium itself adds. With --json, one JSON object whose keys end in their unit.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from bench._proc import Watched, observe, status_value
from podium.lab.local import IMAGE, eventually, one_node_cluster

NODE = "bench-node"
REPLICAS = 3
FLOOR_CODE = "import asyncio, grpc, grpc.aio; asyncio.run(asyncio.sleep(3600))"
STACK = f"""
services:
  idle:
    image: {IMAGE}
    init: true
    stop_grace_period: 2s
    ports: ["80"]
    deploy:
      replicas: {REPLICAS}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--with-service",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=f"run a {REPLICAS}-replica service during the window (default on)",
    )
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before the window")
    parser.add_argument("--window", type=float, default=10.0, help="idle window in seconds")
    args = parser.parse_args()
    if not (0 <= args.settle <= 120 and 1 <= args.window <= 300):
        parser.error("0 <= --settle <= 120 and 1 <= --window <= 300")
    floor = subprocess.Popen([sys.executable, "-c", FLOOR_CODE], start_new_session=True)
    try:
        with one_node_cluster(NODE, prefix="podium-bench-") as (cluster, root):
            if args.with_service:
                (root / "stack.yaml").write_text(STACK)
                cluster.ok("deploy", "-f", str(root / "stack.yaml"))
                eventually(
                    lambda: len(cluster.running_containers()) == REPLICAS,
                    timeout=60,
                    what=f"{REPLICAS} containers running",
                )
            time.sleep(args.settle)  # deliberate: let start-up work and first heartbeats pass
            watched = [
                Watched("manager", cluster.procs["manager"].pid),
                Watched("agent", cluster.procs[NODE].pid),
                Watched("floor: python + asyncio + grpc", floor.pid),
            ]
            elapsed = observe(watched, args.window)
            peaks = {w.name: status_value(w.pid, "VmHWM") for w in watched}
            threads = {w.name: status_value(w.pid, "Threads") for w in watched}
            still_ready = cluster.node_state(NODE) == "ready"
    except KeyboardInterrupt:
        print("interrupted; cleaned up", file=sys.stderr)
        return 130
    finally:
        floor.kill()
        floor.wait()

    rss_mb = {w.name: w.rss_mb() for w in watched}
    cpu_pct = {w.name: w.cpu_pct(elapsed) for w in watched}
    base = watched[2].name
    figures = {
        "manager_idle_rss_mb": round(rss_mb["manager"], 1),
        "agent_idle_rss_mb": round(rss_mb["agent"], 1),
        "manager_idle_cpu_share_pct": round(cpu_pct["manager"], 2),
        "agent_idle_cpu_share_pct": round(cpu_pct["agent"], 2),
        "floor_python_grpc_rss_mb": round(rss_mb[base], 1),
        "floor_python_grpc_cpu_share_pct": round(cpu_pct[base], 2),
        "window_s": round(elapsed, 2),
        "service_replicas": REPLICAS if args.with_service else 0,
    }
    if not still_ready:
        print("warning: the node was not ready after the window", file=sys.stderr)
    if args.json:
        print(json.dumps(figures))
        return 0
    width = max(len(w.name) for w in watched)
    print(
        f"{'process':<{width}}  {'RSS MB':>7}  {'over floor':>10}  {'peak MB':>7}  "
        f"{'threads':>7}  {'cpu % of 1 core':>15}"
    )
    for w in watched:
        over = rss_mb[w.name] - rss_mb[base]
        print(
            f"{w.name:<{width}}  {rss_mb[w.name]:>7.1f}  {over:>+10.1f}  "
            f"{peaks[w.name] / 1024:>7.1f}  {threads[w.name]:>7}  {cpu_pct[w.name]:>15.2f}"
        )
    service = f"{REPLICAS}-replica service running" if args.with_service else "no service"
    print(f"idle window {elapsed:.1f} s after {args.settle:g} s settle; {service}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
