"""Benchmark: time from a host failure to all of its replicas running elsewhere.

    python bench/failover.py [--json] [--trials 5] [--replicas 6]

Three simulated hosts (tests/multihost.py: network namespaces, each with its own engine and
agent). Each trial deploys a service of --replicas spread over them, then either crashes host h3
(agent, engine and containers killed: its sessions break) or partitions it (link down: silence),
and times until every replica runs on the other hosts, polling the Control API directly every
20 ms. Reported: the median of the trials for each failure, next to the anchors' documented
defaults (the baseline this bench cannot run here: Swarm, Nomad and Kubernetes themselves).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import tempfile
import time

import grpc

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from podium.v1 import control, control_grpc, objects
from tests.helpers import IMAGE, eventually
from tests.multihost import HostCluster

# Documented defaults: Swarm marks a node down after 5 heartbeats missed (its dispatcher's
# heartbeat period 5 s x grace 3 ~ 15-20 s); Nomad's heartbeat TTL plus grace ~20-30 s;
# Kubernetes' node-monitor-grace-period 40 s plus the 300 s default toleration before eviction.
ANCHORS_S = {"Docker Swarm": 20.0, "Nomad": 25.0, "Kubernetes": 340.0}
GOALS_S = {"crash": 1.5, "partition": 5.0}


def all_moved(stub: control_grpc.ControlStub, away_from: str, replicas: int) -> bool:
    tasks = stub.ListTasks(control.ListTasksRequest(service="web"), timeout=5).tasks
    running = [t for t in tasks if t.desired_state <= objects.TASK_STATE_RUNNING
               and t.status.state == objects.TASK_STATE_RUNNING]
    return len(running) == replicas and all(t.node_id != away_from for t in running)


def trial(root: pathlib.Path, failure: str, replicas: int) -> float:
    with HostCluster(root, hosts=3) as hosts:
        stack = root / "stack.yaml"
        stack.write_text(f"services:\n  web:\n    image: {IMAGE}\n    init: true\n"
                         f"    stop_grace_period: 1s\n    deploy:\n      replicas: {replicas}\n")
        hosts.ok("deploy", "-f", str(stack))
        node_id = next(n["id"] for n in hosts.json("nodes") if n["name"] == "h3")
        with grpc.insecure_channel(hosts.address) as channel:
            stub = control_grpc.ControlStub(channel)
            start = time.monotonic()
            if failure == "crash":
                hosts.crash("h3")
            else:
                hosts.partition("h3")
            eventually(lambda: all_moved(stub, node_id, replicas), timeout=60, interval=0.02,
                       what=f"replicas moved after the {failure}")
            elapsed = time.monotonic() - start
        hosts.ok("rm", "web")
        return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--replicas", type=int, default=6)
    args = parser.parse_args()
    if not (1 <= args.trials <= 20 and 3 <= args.replicas <= 60):
        parser.error("1 <= --trials <= 20 and 3 <= --replicas <= 60")
    samples: dict[str, list[float]] = {"crash": [], "partition": []}
    for i in range(args.trials):
        for failure in samples:
            with tempfile.TemporaryDirectory(prefix="podium-failover-") as tmp:
                samples[failure].append(trial(pathlib.Path(tmp), failure, args.replicas))
        print(f"trial {i + 1}/{args.trials}: crash {samples['crash'][-1]:.2f} s, "
              f"partition {samples['partition'][-1]:.2f} s", file=sys.stderr, flush=True)
    medians = {k: statistics.median(v) for k, v in samples.items()}
    figures = {
        "crash_to_running_s": round(medians["crash"], 3),
        "partition_to_running_s": round(medians["partition"], 3),
        "crash_trials_s": [round(x, 3) for x in samples["crash"]],
        "partition_trials_s": [round(x, 3) for x in samples["partition"]],
        **{f"{name.lower().replace(' ', '_')}_default_s": s for name, s in ANCHORS_S.items()},
    }
    if args.json:
        print(json.dumps(figures))
        return 0
    print(f"failover of {args.replicas} replicas over 3 hosts, median of {args.trials} trials")
    print(f"{'':36}{'crash (s)':>12}{'partition (s)':>15}")
    print(f"{'Podium':36}{medians['crash']:>12.2f}{medians['partition']:>15.2f}")
    print(f"{'goal':36}{GOALS_S['crash']:>12.1f}{GOALS_S['partition']:>15.1f}")
    for name, seconds in ANCHORS_S.items():
        print(f"{name + ' (default, documented)':36}{seconds:>12.0f}{seconds:>15.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
