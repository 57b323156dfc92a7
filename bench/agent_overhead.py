"""Benchmark: what N probed containers cost one agent (RSS, cpu share), against the same agent idle.

    .venv/bin/python bench/agent_overhead.py [--json] [--replicas N] [--settle S] [--window S]

The bench starts its own manager and one agent (podium.lab.local.one_node_cluster: real processes
in a temp dir) on the local engine. In one run, on the same two processes:

1. baseline: after --settle seconds (default 5), an idle window (--window, default 20 s) with no
   service deployed;
2. loaded: `podium deploy` of a service of --replicas (default 50) podium/web:latest containers
   with init: true and an agent-run HTTP probe of / on port 80 every 1 s, waiting until `podium ps`
   shows every task running and healthy, then --settle seconds, then a window of the same length.

Per window (bench._proc, the same /proc reading as bench/idle_rss.py): RSS is the median VmRSS
sampled once a second; peak is VmHWM (the high-water mark since the process started, so the
loaded peak includes the deploy itself); cpu share is the utime+stime delta over the window's
wall time, in percent of one core. The load stream stays on its default 1 s period throughout.

The service is always removed (`podium rm`, then waiting until its containers are gone), Ctrl-C
and SIGTERM included; the processes are stopped by the cluster context. With --json, one JSON
object whose keys end in their unit.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from bench._proc import Watched, observe, status_value
from podium.lab.local import IMAGE, Cluster, eventually, one_node_cluster

NODE = "bench-node"
SERVICE = "web"
GOAL_RSS_MB = 50.0
GOAL_CPU_PCT = 2.0


def stack(replicas: int) -> str:
    return f"""
services:
  {SERVICE}:
    image: {IMAGE}
    init: true
    stop_grace_period: 1s
    x-podium-probe:
      http: {{port: 80, path: /}}
      interval: 1s
      timeout: 1s
      retries: 3
    deploy:
      replicas: {replicas}
"""


def healthy_count(cluster: Cluster) -> int:
    tasks: list[dict[str, Any]] = cluster.json("ps", SERVICE)
    return sum(1 for t in tasks if t["state"] == "running" and t["health"] == "healthy")


def measure(cluster: Cluster, window: float) -> tuple[dict[str, Watched], dict[str, int], float]:
    """One window over the manager and the agent: (watched, peak KiB, elapsed seconds)."""
    watched = {"manager": Watched("manager", cluster.procs["manager"].pid),
               "agent": Watched("agent", cluster.procs[NODE].pid)}
    elapsed = observe(list(watched.values()), window)
    peaks = {name: status_value(w.pid, "VmHWM") for name, w in watched.items()}
    return watched, peaks, elapsed


def remove_service(cluster: Cluster) -> None:
    result = cluster.run("rm", SERVICE, timeout=60)
    if result.returncode != 0 and "not found" not in (result.stderr + result.stdout).lower():
        print(f"warning: podium rm {SERVICE}: {result.stderr.strip()}", file=sys.stderr)
    eventually(lambda: not cluster.containers(), timeout=120, interval=0.5,
               what="the service's containers removed")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--replicas", type=int, default=50, help="containers to probe (default 50)")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before each window")
    parser.add_argument("--window", type=float, default=20.0, help="window length in seconds")
    args = parser.parse_args()
    if not (1 <= args.replicas <= 200 and 0 <= args.settle <= 120 and 1 <= args.window <= 300):
        parser.error("1 <= --replicas <= 200, 0 <= --settle <= 120 and 1 <= --window <= 300")
    try:
        with one_node_cluster(NODE, prefix="podium-bench-") as (cluster, root):
            time.sleep(args.settle)  # deliberate: let start-up work and first heartbeats pass
            idle, idle_peaks, idle_elapsed = measure(cluster, args.window)
            (root / "stack.yaml").write_text(stack(args.replicas))
            try:
                started = time.monotonic()
                cluster.ok("deploy", "-f", str(root / "stack.yaml"), "--timeout", "180")
                eventually(lambda: healthy_count(cluster) == args.replicas, timeout=180,
                           interval=1.0, what=f"{args.replicas} tasks running and healthy")
                converged = time.monotonic() - started
                time.sleep(args.settle)  # deliberate: let the deploy's burst of work pass
                loaded, loaded_peaks, elapsed = measure(cluster, args.window)
                healthy_after = healthy_count(cluster)
            finally:
                remove_service(cluster)
    except KeyboardInterrupt:
        print("interrupted; cleaned up", file=sys.stderr)
        return 130

    agent_rss, agent_cpu = loaded["agent"].rss_mb(), loaded["agent"].cpu_pct(elapsed)
    figures = {
        "agent_rss_mb": round(agent_rss, 1),
        "agent_peak_rss_mb": round(loaded_peaks["agent"] / 1024, 1),
        "agent_cpu_share_pct": round(agent_cpu, 2),
        "agent_idle_rss_mb": round(idle["agent"].rss_mb(), 1),
        "agent_idle_cpu_share_pct": round(idle["agent"].cpu_pct(idle_elapsed), 2),
        "manager_rss_mb": round(loaded["manager"].rss_mb(), 1),
        "manager_cpu_share_pct": round(loaded["manager"].cpu_pct(elapsed), 2),
        "manager_idle_cpu_share_pct": round(idle["manager"].cpu_pct(idle_elapsed), 2),
        "replicas_count": args.replicas,
        "window_s": round(elapsed, 1),
        "converge_s": round(converged, 1),
    }
    if healthy_after != args.replicas:
        print(f"warning: {healthy_after}/{args.replicas} healthy after the window", file=sys.stderr)
    if args.json:
        print(json.dumps(figures))
        return 0
    rows = [
        ("agent, idle (0 replicas)", idle["agent"], idle_peaks["agent"], idle_elapsed),
        (f"agent, {args.replicas} probed", loaded["agent"], loaded_peaks["agent"], elapsed),
        ("manager, idle", idle["manager"], idle_peaks["manager"], idle_elapsed),
        (f"manager, {args.replicas} tasks", loaded["manager"], loaded_peaks["manager"], elapsed),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'process':<{width}}  {'RSS MB':>7}  {'peak MB':>7}  {'cpu % of 1 core':>15}")
    for name, w, peak, secs in rows:
        print(f"{name:<{width}}  {w.rss_mb():>7.1f}  {peak / 1024:>7.1f}  {w.cpu_pct(secs):>15.2f}")
    added_rss = agent_rss - idle["agent"].rss_mb()
    added_cpu = agent_cpu - idle["agent"].cpu_pct(idle_elapsed)
    print(f"{args.replicas} probed containers add {added_rss:+.1f} MB and {added_cpu:+.2f} % "
          f"to the agent ({elapsed:.1f} s windows, {args.settle:g} s settle; "
          f"deploy to all healthy {converged:.1f} s)")
    verdict = "met" if agent_rss <= GOAL_RSS_MB and agent_cpu <= GOAL_CPU_PCT else "NOT met"
    print(f"goal: agent <= {GOAL_RSS_MB:g} MB RSS and <= {GOAL_CPU_PCT:g} % of a core with "
          f"{args.replicas} containers: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
