"""Benchmark: Jepsen-style faults on three managers on etcd, for several minutes, under a steady
stream of writes, with the invariants checked (podium.lab.nemesis, podium.lab.faultcheck).

    python bench/ha_faults.py [--duration 300] [--seed N] [--agents 4] [--baseline 30]
                              [--no-mesh] [--json]

The lab: 3 etcd members, 3 managers each in its own network namespace, --agents agents on the
fake executor in another namespace. Baseline (same lab, same run): the workload alone for
--baseline seconds, no fault. Then --duration seconds of faults at random (seeded; the seed is
printed) while the workload goes on: kill -9 of the leader, the leader partitioned from etcd,
the leader partitioned from the agents, an etcd member killed, everything restarted; each held
3-7 s then healed. Afterwards every fault is healed, the time until the cluster converges (every
service's tasks running as its spec says, every agent ready) is measured, and the invariants are
checked: acknowledged writes all there, no service lost, one live task per slot, no two
managers' terms overlapping.

Mesh (the real engine, unless --no-mesh): a real agent on the local engine serves a service of two
busybox httpd replicas on a published port; a client loops requests through its mesh, one new
connection each, during the baseline and the faults: every one must succeed (the data path does
not depend on the control plane). That agent reaches the managers from the root namespace, so
the partition from the agents leaves it connected.

Printed: faults by kind with their observed effects (median seconds from the fault to a new
leader, from the heal to every agent ready), writes (acknowledged, indeterminate, latency of the
acknowledged ones) next to the baseline's, violations (goal 0), the time to converge. `--json`:
one JSON object, keys ending in their units.
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib
import random
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from podium.lab.faultcheck import (
    HttpLoop,
    Workload,
    Write,
    check_final,
    converged,
    overlapping_terms,
)
from podium.lab.local import eventually, free_port
from podium.lab.nemesis import FaultLab, Nemesis


def latency(writes: list[Write]) -> tuple[float, float]:
    """Median and worst seconds of the acknowledged writes."""
    took = sorted(w.ended - w.started for w in writes if w.acknowledged)
    if not took:
        return 0.0, 0.0
    return statistics.median(took), took[-1]


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def run(root: pathlib.Path, *, duration: float, seed: int, agents: int,
        baseline_s: float, quiet: bool, mesh: bool,
        kinds: tuple[str, ...] = Nemesis.KINDS) -> dict[str, Any]:
    say = (lambda line: None) if quiet else (lambda line: print(line, flush=True))
    with FaultLab(root / "lab", agents=agents, mesh_port=free_port() if mesh else None) as lab:
        requests = HttpLoop(lab.mesh_url) if mesh else None
        if requests is not None:
            requests.start()
        # Baseline: the same workload with no fault.
        calm = Workload(lab.group, seed=seed + 1, prefix="calm")
        calm.start()
        time.sleep(baseline_s)  # the baseline's length
        calm.stop()
        say(f"baseline: {calm.summary()}")
        calm_requests = (requests.sent, requests.failed) if requests is not None else (0, 0)

        nemesis = Nemesis(lab, seed=seed, log=say, kinds=kinds)
        workload = Workload(lab.group, seed=seed)
        workload.cut_off = nemesis.cut_off
        workload.start()
        started = time.monotonic()
        try:
            for kind in kinds:  # each kind at least once, then at random
                nemesis.one(kind)
            nemesis.run(max(0.0, duration - (time.monotonic() - started)))
        finally:
            workload.stop()
            nemesis.heal_all()
        faulted_s = time.monotonic() - started
        healed = time.monotonic()
        eventually(lambda: lab.all_nodes_ready() and converged(lab.group), timeout=180,
                   interval=0.2, what="the cluster converged after the last heal")
        converge_s = time.monotonic() - healed
        if requests is not None:
            requests.stop()
        final = check_final(lab.group, calm, workload)
        overlaps, term_count = overlapping_terms(lab.group, nemesis.deaths, time.time())
        workload.dump(root / "writes.jsonl")
        violations = workload.violations + final + overlaps + [
            f"{key} exited by itself ({code})" for key, code in nemesis.exits]
        if requests is not None:
            violations += [f"request through the mesh failed at {at:.3f}: {why}"
                           for at, why in requests.failures]

    by_kind: dict[str, list[Any]] = collections.defaultdict(list)
    for event in nemesis.events:
        by_kind[event.kind].append(event)
    kinds = {}
    for kind in Nemesis.KINDS:
        events = by_kind.get(kind, [])
        kinds[kind] = {
            "count": len(events),
            "to_new_leader_median_s": _median([e.observed["fault_to_new_leader_s"]
                                               for e in events
                                               if "fault_to_new_leader_s" in e.observed]),
            "to_agent_down_median_s": _median([e.observed["fault_to_agent_down_s"]
                                               for e in events
                                               if "fault_to_agent_down_s" in e.observed]),
            "heal_to_leader_median_s": _median([e.observed["heal_to_leader_s"] for e in events
                                                if "heal_to_leader_s" in e.observed]),
            "heal_to_agents_ready_median_s": _median(
                [e.observed["heal_to_agents_ready_s"] for e in events
                 if "heal_to_agents_ready_s" in e.observed]),
        }
    base_median, base_max = latency(calm.writes)
    median, worst = latency(workload.writes)
    summary = workload.summary()
    return {
        "seed": seed,
        "faults_s": round(faulted_s, 1),
        "faults_count": len(nemesis.events),
        "faults": kinds,
        "writes_count": summary["writes_count"],
        "acknowledged_count": summary["acknowledged_count"],
        "indeterminate_count": summary["indeterminate_count"],
        "acknowledged_per_s": round(summary["acknowledged_count"] / faulted_s, 2),
        "write_median_s": round(median, 3),
        "write_max_s": round(worst, 3),
        "baseline_s": baseline_s,
        "baseline_acknowledged_count": calm.summary()["acknowledged_count"],
        "baseline_acknowledged_per_s": round(calm.summary()["acknowledged_count"]
                                             / baseline_s, 2),
        "baseline_write_median_s": round(base_median, 3),
        "baseline_write_max_s": round(base_max, 3),
        "continuous_checks_count": summary["checks_count"],
        "stale_reads_count": summary["stale_reads_count"],
        "stale_reads": workload.stale_reads[:10],
        "leader_terms_count": term_count,
        "violations_count": len(violations),
        "violations": violations[:20],
        "converge_after_last_heal_s": round(converge_s, 2),
        "mesh_requests_count": requests.sent - calm_requests[0] if requests else 0,
        "mesh_failed_requests_count": requests.failed - calm_requests[1] if requests else 0,
        "baseline_mesh_requests_count": calm_requests[0],
        "baseline_mesh_failed_requests_count": calm_requests[1],
    }


def _show(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=300.0,
                   help="seconds of faults (default %(default)s)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--agents", type=int, default=4)
    p.add_argument("--baseline", type=float, default=30.0,
                   help="seconds of the workload alone first (default %(default)s)")
    p.add_argument("--no-mesh", action="store_true",
                   help="no real agent and no requests through its mesh (no engine needed)")
    p.add_argument("--kinds", default=",".join(Nemesis.KINDS),
                   help="the faults to choose from, comma-separated (default: all)")
    p.add_argument("--keep", type=pathlib.Path, default=None,
                   help="run in this directory and keep it (the logs), not in a temporary one")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.duration <= 0 or args.baseline <= 0 or args.agents < 1:
        p.error("--duration and --baseline must be > 0, --agents >= 1")
    kinds = tuple(k.strip() for k in args.kinds.split(","))
    unknown = [k for k in kinds if k not in Nemesis.KINDS]
    if unknown or not kinds:
        p.error(f"--kinds {args.kinds!r}: {', '.join(unknown) or 'none'} unknown; "
                f"accepted: {', '.join(Nemesis.KINDS)}")
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    if not args.json:
        print(f"seed {seed} (--seed {seed} repeats the faults' choices)", flush=True)
    with tempfile.TemporaryDirectory(prefix="podium-hafaults-") as tmp:
        result = run(args.keep or pathlib.Path(tmp), duration=args.duration, seed=seed,
                     agents=args.agents, baseline_s=args.baseline, quiet=args.json,
                     mesh=not args.no_mesh, kinds=kinds)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"\n{result['faults_count']} faults in {result['faults_s']:.0f} s on 3 managers, "
          f"3 etcd members, {args.agents} agents (fake executor)")
    print("(medians) fault -> a new leader, -> an agent marked down; heal -> a leader, "
          "-> every agent ready")
    print(f"{'fault':26} {'count':>6} {'-> new leader':>14} {'-> agent down':>14} "
          f"{'heal -> leader':>15} {'heal -> agents ready':>21}")
    for kind, row in result["faults"].items():
        print(f"{kind:26} {row['count']:>6} {_show(row['to_new_leader_median_s']):>14} "
              f"{_show(row['to_agent_down_median_s']):>14} "
              f"{_show(row['heal_to_leader_median_s']):>15} "
              f"{_show(row['heal_to_agents_ready_median_s']):>21}")
    print(f"\n{'writes':34} {'under faults':>14} {'baseline (no fault)':>20}")
    rows = [
        ("acknowledged", str(result["acknowledged_count"]),
         str(result["baseline_acknowledged_count"])),
        ("acknowledged per second", f"{result['acknowledged_per_s']:.2f}",
         f"{result['baseline_acknowledged_per_s']:.2f}"),
        ("indeterminate (failed or timed out)", str(result["indeterminate_count"]), "-"),
        ("acknowledged write, median", f"{result['write_median_s']:.3f} s",
         f"{result['baseline_write_median_s']:.3f} s"),
        ("acknowledged write, max", f"{result['write_max_s']:.3f} s",
         f"{result['baseline_write_max_s']:.3f} s"),
    ]
    if not args.no_mesh:
        rows.append(("requests through the mesh failed",
                     f"{result['mesh_failed_requests_count']} of "
                     f"{result['mesh_requests_count']}",
                     f"{result['baseline_mesh_failed_requests_count']} of "
                     f"{result['baseline_mesh_requests_count']}"))
    for name, faulted, base in rows:
        print(f"{name:34} {faulted:>14} {base:>20}")
    print(f"\ninvariant violations (goal 0): {result['violations_count']}  "
          f"({result['continuous_checks_count']} continuous checks, "
          f"{result['leader_terms_count']} leader terms)")
    for line in result["violations"]:
        print(f"  {line}")
    print(f"stale reads from a manager cut off from etcd (by design, not counted above): "
          f"{result['stale_reads_count']}")
    for line in result["stale_reads"]:
        print(f"  {line}")
    print(f"converged after the last heal in {result['converge_after_last_heal_s']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
