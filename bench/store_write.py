"""Benchmark: the store's write latency on etcd (one member, three members) against SQLite,
measured in the same run.

    python bench/store_write.py [--json] [--tasks N] [--writes N] [--batches N] [--batch N]

For each backend: a service and --tasks tasks are written, then
- one task: --writes updates, one after the other, each changing one task's status (what an
  agent's status report of one task costs);
- batch: --batches updates of --batch tasks' status each, in one transaction (a status report
  of many tasks, the dispatcher's batched write);
- open: how long opening a store that holds them takes (a manager's restart: SQLite reads
  state.db, etcd one range read in pages);
- on etcd, also how long after update() was called a second store on the same etcd (another
  manager) has the change in its tables, through its watch.
update() returns once the write is durable: SQLite in WAL mode with synchronous=NORMAL (no
fsync per commit), etcd after a quorum wrote it to its log (an fsync on each member). The etcd
members run on this machine's loopback and disk, each in its own process. With --json, one
JSON object whose keys end in their unit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

from podium.lab.etcd import EtcdCluster
from podium.manager.store import EtcdStore, SqliteStore, WriteTx, parse_url
from podium.v1 import objects

RUNNING = objects.TASK_STATE_RUNNING
Update = Callable[[Callable[[WriteTx], None]], Awaitable[None]]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _seed(count: int, start: int, stop: int) -> Callable[[WriteTx], None]:
    def fn(tx: WriteTx) -> None:
        if start == 0:
            svc = objects.Service(id="s1")
            svc.spec.name = "web"
            svc.spec.replicas = count
            svc.spec.container.image = "app:1"
            tx.create(svc)
        for i in range(start, stop):
            tx.create(objects.Task(id=f"t{i:06d}", service_id="s1", node_id=f"n{i % 50}",
                                   slot=i + 1))
    return fn


def _status(ids: list[str], n: int) -> Callable[[WriteTx], None]:
    def fn(tx: WriteTx) -> None:
        for id in ids:
            task = tx.get_task(id)
            assert task is not None
            task.status.state = RUNNING
            task.status.message = f"report {n}"
            tx.update(task)
    return fn


async def _measure(update: Update, tasks: int, writes: int, batches: int, batch: int,
                   seen: Callable[[str, str, float], Awaitable[float]] | None,
                   reopen: Callable[[], Awaitable[float]]) -> dict[str, float]:
    for start in range(0, tasks, 1000):
        await update(_seed(tasks, start, min(tasks, start + 1000)))
    open_s = await reopen()
    one: list[float] = []
    lag: list[float] = []
    for n in range(writes):
        id = f"t{n % tasks:06d}"
        started = time.perf_counter()
        await update(_status([id], n))
        one.append(time.perf_counter() - started)
        if seen is not None and n % 5 == 0:
            lag.append(await seen(id, f"report {n}", started))
    many: list[float] = []
    for n in range(batches):
        ids = [f"t{(n * batch + i) % tasks:06d}" for i in range(batch)]
        started = time.perf_counter()
        await update(_status(ids, writes + n))
        many.append(time.perf_counter() - started)
    figures = {
        "open_s": open_s,
        "one_p50_ms": _percentile(one, 0.5) * 1000,
        "one_p99_ms": _percentile(one, 0.99) * 1000,
        "one_per_second_count": len(one) / sum(one),
        "batch_p50_ms": _percentile(many, 0.5) * 1000,
        "batch_p99_ms": _percentile(many, 0.99) * 1000,
        "batch_tasks_per_second_count": batch * len(many) / sum(many),
    }
    if lag:
        figures["other_store_lag_p50_ms"] = _percentile(lag, 0.5) * 1000
        figures["other_store_lag_max_ms"] = max(lag) * 1000
    return figures


async def _sqlite(root: pathlib.Path, args: argparse.Namespace) -> dict[str, float]:
    store = SqliteStore(root / "state.db")
    try:
        async def update(fn: Callable[[WriteTx], None]) -> None:
            await store.update(fn)
        async def reopen() -> float:
            started = time.perf_counter()
            SqliteStore(root / "state.db").close()
            return time.perf_counter() - started

        return await _measure(update, args.tasks, args.writes, args.batches, args.batch, None,
                              reopen)
    finally:
        store.close()


async def _etcd(etcd: EtcdCluster, args: argparse.Namespace) -> dict[str, float]:
    target = parse_url(etcd.url + "/bench")
    store = await EtcdStore.open(target)
    other = await EtcdStore.open(target)

    async def update(fn: Callable[[WriteTx], None]) -> None:
        await store.update(fn)

    async def seen(id: str, message: str, started: float) -> float:
        while True:
            task = other.view().get_task(id)
            if task is not None and task.status.message == message:
                return time.perf_counter() - started
            await asyncio.sleep(0.0005)

    async def reopen() -> float:
        started = time.perf_counter()
        await (await EtcdStore.open(target)).aclose()
        return time.perf_counter() - started

    try:
        return await _measure(update, args.tasks, args.writes, args.batches, args.batch, seen,
                              reopen)
    finally:
        await store.aclose()
        await other.aclose()


def run(args: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = {"tasks_count": args.tasks, "batch_tasks_count": args.batch}
    with tempfile.TemporaryDirectory(prefix="podium-store-bench-") as tmp:
        root = pathlib.Path(tmp)
        for name, result in [("sqlite", asyncio.run(_sqlite(root, args)))]:
            figures.update({f"{name}_{k}": v for k, v in result.items()})
        for size in (1, 3):
            with EtcdCluster(size, root=root / f"etcd{size}") as etcd:
                result = asyncio.run(_etcd(etcd, args))
            figures.update({f"etcd{size}_{k}": v for k, v in result.items()})
    return figures


def print_table(f: dict[str, Any]) -> None:
    print(f"store writes: {f['tasks_count']} tasks stored; one task's status per update, then "
          f"{f['batch_tasks_count']} tasks' status per update")
    print(f"{'':<20}{'1 task p50':>11}{'p99':>8}{'writes/s':>10}{'batch p50':>11}{'p99':>8}"
          f"{'tasks/s':>9}{'other store p50':>17}{'open':>9}")
    for name, label in (("sqlite", "SQLite (baseline)"), ("etcd1", "etcd, 1 member"),
                        ("etcd3", "etcd, 3 members")):
        lag = f.get(f"{name}_other_store_lag_p50_ms")
        print(f"{label:<20}{f[name + '_one_p50_ms']:>9.2f}ms{f[name + '_one_p99_ms']:>6.1f}ms"
              f"{f[name + '_one_per_second_count']:>10.0f}"
              f"{f[name + '_batch_p50_ms']:>9.1f}ms{f[name + '_batch_p99_ms']:>6.1f}ms"
              f"{f[name + '_batch_tasks_per_second_count']:>9.0f}"
              f"{'-' if lag is None else f'{lag:.2f} ms':>17}{f[name + '_open_s']:>8.2f}s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print one JSON object of figures")
    parser.add_argument("--tasks", type=int, default=2000, help="tasks stored (default 2000)")
    parser.add_argument("--writes", type=int, default=300,
                        help="one-task updates measured (default 300)")
    parser.add_argument("--batches", type=int, default=30,
                        help="batched updates measured (default 30)")
    parser.add_argument("--batch", type=int, default=100,
                        help="tasks per batched update (default 100)")
    args = parser.parse_args(argv)
    if min(args.tasks, args.writes, args.batches, args.batch) < 1 or args.batch > args.tasks:
        parser.error("every count must be at least 1, and --batch at most --tasks")
    figures = run(args)
    if args.json:
        print(json.dumps(figures))
    else:
        print_table(figures)


if __name__ == "__main__":
    sys.exit(main())
