"""Benchmark: placements per second of the pure scheduler, against a naive scan in the same run.

    python bench/scheduler.py [--json] [--nodes N] [--tasks N] [--naive-tasks N] [--repeat N]

The cluster comes from build_cluster(): nodes with 16 cpus / 64 GiB, labels zone (a, b, c) and
rack, and pending replicas of 10 services with modest reservations and a couple of constraints.
The naive baseline (first-fit scan over every node per task, spread by counting) costs
O(tasks x nodes), so it runs on the first --naive-tasks of them; its rate barely depends on how
many it places. Both must place the subset identically, which the script checks.

Figures are the best of --repeat runs (the machine is shared). With --json, one JSON object whose
keys end in their unit.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from podium.manager.placement import parse_constraint, schedule
from podium.manager.scheduler import commit_plan
from podium.manager.store import SqliteStore, WriteTx
from podium.v1 import objects

CPU = 10**9
GiB = 1 << 30
MiB = 1 << 20
NOW = 1_700_000_000.0
SERVICES = 10
# Per service (cycled): cpu, memory, constraints.
SHAPES: list[tuple[float, int, tuple[str, ...]]] = [
    (0.25, 256 * MiB, ()),
    (0.5, 512 * MiB, ("node.labels.zone == a",)),
    (0.1, 128 * MiB, ("node.labels.zone != c", "node.labels.rack != r07")),
    (1.0, 1 * GiB, ()),
    (0.25, 256 * MiB, ("node.labels.zone == b",)),
]


def build_cluster(nodes: int, tasks: int) -> tuple[list[objects.Node], list[objects.Task]]:
    """``nodes`` ready, active nodes and ``tasks`` pending replicas spread over 10 services."""
    cluster = [
        objects.Node(
            id=f"node-{i:05d}",
            spec=objects.NodeSpec(availability=objects.NodeSpec.AVAILABILITY_ACTIVE),
            description=objects.NodeDescription(
                name=f"host-{i:05d}",
                labels={"zone": "abc"[i % 3], "rack": f"r{i % 20:02d}"},
                capacity=objects.Resources(nano_cpus=16 * CPU, memory_bytes=64 * GiB),
            ),
            status=objects.NodeStatus(state=objects.NodeStatus.STATE_READY),
        )
        for i in range(nodes)
    ]
    pending = []
    for i in range(tasks):
        service, slot = i % SERVICES, i // SERVICES + 1
        cpus, memory, constraints = SHAPES[service % len(SHAPES)]
        pending.append(objects.Task(
            id=f"task-{service:02d}-{slot:06d}",
            service_id=f"svc-{service:02d}",
            slot=slot,
            spec=objects.ServiceSpec(
                resources=objects.ResourceRequirements(reservations=objects.Resources(
                    nano_cpus=int(cpus * CPU), memory_bytes=memory)),
                placement=objects.Placement(constraints=list(constraints)),
            ),
            desired_state=objects.TASK_STATE_RUNNING,
            status=objects.TaskStatus(state=objects.TASK_STATE_PENDING),
        ))
    return cluster, pending


def naive_schedule(nodes: list[objects.Node], pending: list[objects.Task]) -> dict[str, str]:
    """Reference scheduler: for each task, check every node and take the least loaded that fits.

    Same filters, spread key and task order as schedule() (no existing tasks, no host ports, no
    pinned tasks: the benchmark has none), without grouping or heaps.
    """
    free = {n.id: [n.description.capacity.nano_cpus, n.description.capacity.memory_bytes]
            for n in nodes}
    labels = {n.id: dict(n.description.labels) for n in nodes}
    per_service: Counter[tuple[str, str]] = Counter()
    total: Counter[str] = Counter()
    placed = {}
    for task in sorted(pending, key=lambda t: (t.service_id, t.slot, t.id)):
        res = task.spec.resources.reservations
        constraints = [parse_constraint(c) for c in task.spec.placement.constraints]
        best: tuple[int, int, str] | None = None
        for node in nodes:
            if (node.status.state != objects.NodeStatus.STATE_READY
                    or node.spec.availability != objects.NodeSpec.AVAILABILITY_ACTIVE):
                continue
            if not all(c.matches(node.id, node.description.name, labels[node.id])
                       for c in constraints):
                continue
            cpu, memory = free[node.id]
            if (res.nano_cpus and cpu < res.nano_cpus) or (res.memory_bytes
                                                             and memory < res.memory_bytes):
                continue
            key = (per_service[task.service_id, node.id], total[node.id], node.id)
            if best is None or key < best:
                best = key
        if best is not None:
            node_id = best[2]
            free[node_id][0] -= res.nano_cpus
            free[node_id][1] -= res.memory_bytes
            per_service[task.service_id, node_id] += 1
            total[node_id] += 1
            placed[task.id] = node_id
    return placed


def best_time(run: Callable[[], object], repeat: int) -> tuple[float, Any]:
    """The shortest of ``repeat`` runs, in seconds, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def measure(nodes: int, tasks: int, naive_tasks: int, repeat: int) -> dict[str, float]:
    cluster, pending = build_cluster(nodes, tasks)
    pure_s, plan = best_time(lambda: schedule(cluster, [], pending, NOW), repeat)

    # The subset keeps every service's first replicas, so its order matches the full run's.
    subset = sorted(pending, key=lambda t: (t.slot, t.service_id))[:min(naive_tasks, tasks)]
    naive_s, naive = best_time(lambda: naive_schedule(cluster, subset), 1)
    subset_plan = schedule(cluster, [], subset, NOW)
    if naive != {d.task_id: d.node_id for d in subset_plan.placed}:
        raise SystemExit("schedule() and the naive scan disagree on the subset")

    commit_s, committed = measure_with_commit(nodes, tasks)
    pure_rate = len(plan.placed) / pure_s
    naive_rate = len(naive) / naive_s
    return {
        "nodes_count": nodes,
        "pending_tasks_count": tasks,
        "pure_placed_count": len(plan.placed),
        "pure_unplaced_count": len(plan.unplaced),
        "pure_seconds_s": pure_s,
        "pure_placements_per_s": pure_rate,
        "commit_seconds_s": commit_s,
        "commit_placed_count": committed,
        "commit_placements_per_s": committed / commit_s,
        "naive_tasks_count": len(subset),
        "naive_seconds_s": naive_s,
        "naive_placements_per_s": naive_rate,
        "speedup_ratio": pure_rate / naive_rate,
    }


def measure_with_commit(nodes: int, tasks: int) -> tuple[float, int]:
    """The manager's scheduling pass: schedule() over the store's view, then the plan
    committed in one transaction (each decision re-checked, encoded and written to
    SQLite). Seeding the store is not timed."""
    cluster, pending = build_cluster(nodes, tasks)
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(pathlib.Path(tmp) / "state.db")
        try:

            def seed(tx: WriteTx) -> None:
                for obj in (*cluster, *pending):
                    tx.create(obj)

            store.update_now(seed)
            start = time.perf_counter()
            view = store.view()
            view_tasks = list(view.tasks())
            plan = schedule(list(view.nodes()), [], view_tasks, time.time())
            committed = store.update_now(lambda tx: commit_plan(tx, plan))
            return time.perf_counter() - start, committed
        finally:
            store.close()


def print_table(figures: dict[str, float]) -> None:
    print(f"scheduler: {figures['nodes_count']:.0f} nodes, "
          f"{figures['pending_tasks_count']:.0f} pending tasks "
          f"({figures['pure_unplaced_count']:.0f} unplaced)")
    print(f"{'':<28}{'tasks':>8}{'seconds':>10}{'placements/s':>15}")
    for label, prefix, count in (
        ("schedule() (grouped heaps)", "pure", figures["pending_tasks_count"]),
        ("schedule() + store commit", "commit", figures["commit_placed_count"]),
        ("naive scan (baseline)", "naive", figures["naive_tasks_count"]),
    ):
        print(f"{label:<28}{count:>8.0f}{figures[prefix + '_seconds_s']:>10.3f}"
              f"{figures[prefix + '_placements_per_s']:>15,.0f}")
    print(f"{'speedup':<28}{'':>18}{figures['speedup_ratio']:>14.0f}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print one JSON object of figures")
    parser.add_argument("--nodes", type=int, default=1_000)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--naive-tasks", type=int, default=500,
                        help="tasks the naive baseline places (it is O(tasks x nodes))")
    parser.add_argument("--repeat", type=int, default=3, help="runs of schedule(); best is kept")
    args = parser.parse_args(argv)
    figures = measure(args.nodes, args.tasks, args.naive_tasks, args.repeat)
    if args.json:
        print(json.dumps(figures))
    else:
        print_table(figures)


if __name__ == "__main__":
    main()
