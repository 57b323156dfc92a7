"""LoadBook: the latest load of every node and task, with a short history, in memory.

Agents report load over their sessions (the dispatcher records it here); the control API reads
it. Load is not persisted: it is a measurement, refreshed every period, and a restarted manager
has it again within a period of its agents reconnecting. Tasks missing from a non-summary report
keep their previous figures; a summary report replaces the node's whole task set.

Request rates come from the mesh's counters (LoadReport.requests, which only grow while an agent
runs): a task's rate on a node is its counter's rise over the node's reports of the last
RATE_WINDOW_S, by the agent's clock; a counter that fell (the agent restarted) counts from 0.
`reported_at` says when each node last reported, by the manager's clock, so a reader can tell a
silent node's figures from current ones.
"""

from __future__ import annotations

import time
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from podium.v1 import control, dispatcher

HISTORY = 60
# Request rates are measured over the reports of this many seconds (at least two reports).
RATE_WINDOW_S = 2.0


L = TypeVar("L", dispatcher.TaskLoad, dispatcher.NodeLoad)


class _History:
    """The last HISTORY samples (time, cpu cores, memory bytes, memory share) in one array of
    doubles used as a ring: ~2 KB a series, where as many LoadSample messages took ~57 KB and
    tens of Python objects (at 150,000 tasks: 0.3 GB instead of 8 GB, and little for the
    collector to walk)."""

    __slots__ = ("_count", "_next", "_values")

    def __init__(self) -> None:
        self._values = array("d", bytes(8 * 4 * HISTORY))
        self._next = 0
        self._count = 0

    def append(self, when: float, cpu: float, memory: int, share: float) -> None:
        at = 4 * self._next
        self._values[at:at + 4] = array("d", (when, cpu, float(memory), share))
        self._next = (self._next + 1) % HISTORY
        self._count = min(self._count + 1, HISTORY)

    def samples(self, last: int) -> list[control.LoadSample]:
        """The newest `last` samples, oldest first."""
        out = []
        for i in range(min(last, self._count), 0, -1):
            at = 4 * ((self._next - i) % HISTORY)
            when, cpu, memory, share = self._values[at:at + 4]
            sample = control.LoadSample(cpu_cores=cpu, memory_bytes=int(memory),
                                        memory_share=share)
            sample.time.FromNanoseconds(int(when * 1e9))
            out.append(sample)
        return out


@dataclass(slots=True)
class _Series(Generic[L]):
    latest: L
    time: float
    node_id: str
    history: _History = field(default_factory=_History)


class LoadBook:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._nodes: dict[str, _Series[dispatcher.NodeLoad]] = {}
        self._tasks: dict[str, _Series[dispatcher.TaskLoad]] = {}
        self._tasks_of_node: dict[str, set[str]] = {}  # node id -> ids of its tasks' series
        # Node id -> task id -> connections open through that node's mesh.
        self._connections: dict[str, dict[str, int]] = {}
        # Node id -> its last reports' (agent time, task id -> requests counter), newest last.
        self._requests: dict[str, deque[tuple[float, dict[str, int]]]] = {}
        self._reported: dict[str, float] = {}  # node id -> manager clock at its last report
        self._uncounted: set[str] = set()  # nodes whose mesh counts no traffic (kernel path)

    def record(self, node_id: str, report: dispatcher.LoadReport) -> None:
        when = report.time.ToNanoseconds() / 1e9
        self._reported[node_id] = self._clock()
        if report.mesh_uncounted:
            self._uncounted.add(node_id)
        else:
            self._uncounted.discard(node_id)
        self._connections[node_id] = dict(report.connections)
        counters = self._requests.setdefault(node_id, deque(maxlen=16))
        if counters and when <= counters[-1][0]:
            counters.clear()  # the agent's clock went back: rates start again
        counters.append((when, dict(report.requests)))
        node = report.node
        self._add(
            self._nodes,
            node_id,
            node_id,
            node,
            when,
            node.cpu_cores_used,
            node.memory_used_bytes,
            _share(node.memory_used_bytes, node.memory_total_bytes),
        )
        if report.summary:
            reported = {t.task_id for t in report.tasks}
            for task_id in self._tasks_of_node.get(node_id, set()) - reported:
                self._drop_task(task_id)
        for task in report.tasks:
            series = self._tasks.get(task.task_id)
            if series is not None and series.node_id != node_id:
                self._drop_task(task.task_id)  # moved: its figures start again on the new node
            self._add(
                self._tasks,
                task.task_id,
                node_id,
                task,
                when,
                task.cpu_cores,
                task.memory_bytes,
                task.memory_share,
            )
            self._tasks_of_node.setdefault(node_id, set()).add(task.task_id)

    def _drop_task(self, task_id: str) -> None:
        series = self._tasks.pop(task_id, None)
        if series is not None:
            ids = self._tasks_of_node.get(series.node_id)
            if ids is not None:
                ids.discard(task_id)
                if not ids:
                    del self._tasks_of_node[series.node_id]

    @staticmethod
    def _add(
        table: dict[str, _Series[L]],
        key: str,
        node_id: str,
        latest: L,
        when: float,
        cpu: float,
        memory: int,
        share: float,
    ) -> None:
        series = table.get(key)
        if series is None or series.node_id != node_id:
            series = table[key] = _Series(latest, when, node_id)
        series.latest, series.time = latest, when
        series.history.append(when, cpu, memory, share)

    def reported_at(self, node_id: str) -> float | None:
        """The manager's clock (time.monotonic unless given) at the node's last report."""
        return self._reported.get(node_id)

    def mesh_counted(self, node_id: str) -> bool:
        """Whether the node's mesh counts requests and connections (the kernel path does not)."""
        return node_id not in self._uncounted

    def task_load(self, task_id: str) -> dispatcher.TaskLoad | None:
        series = self._tasks.get(task_id)
        return series.latest if series is not None else None

    def connections(self) -> dict[str, int]:
        """Task id -> connections open to it through the mesh, summed over the nodes."""
        total: dict[str, int] = {}
        for per_task in self._connections.values():
            for task_id, count in per_task.items():
                total[task_id] = total.get(task_id, 0) + count
        return total

    def request_counts(self) -> dict[str, int]:
        """Task id -> requests forwarded to it through the mesh, by the latest counters of the
        nodes reporting now (they fall when an agent restarts or its node is forgotten)."""
        total: dict[str, int] = {}
        for counters in self._requests.values():
            if counters:
                for task_id, count in counters[-1][1].items():
                    total[task_id] = total.get(task_id, 0) + count
        return total

    def request_rates(self) -> dict[str, float]:
        """Task id -> requests per second to it through the mesh, summed over the nodes that
        have reported twice within RATE_WINDOW_S."""
        rates: dict[str, float] = {}
        for counters in self._requests.values():
            if len(counters) < 2:
                continue
            last_time, last = counters[-1]
            recent = [(t, c) for t, c in counters if last_time - t <= RATE_WINDOW_S + 0.5]
            first_time, first = recent[0] if len(recent) > 1 else counters[-2]
            span = last_time - first_time
            for task_id, count in last.items():
                before = first.get(task_id, 0)
                rise = count - before if count >= before else count
                rates[task_id] = rates.get(task_id, 0.0) + rise / span
        return rates

    def forget_node(self, node_id: str) -> None:
        self._nodes.pop(node_id, None)
        self._connections.pop(node_id, None)
        self._requests.pop(node_id, None)
        self._reported.pop(node_id, None)
        self._uncounted.discard(node_id)
        for task_id in list(self._tasks_of_node.get(node_id, ())):
            self._drop_task(task_id)

    def snapshot(self, history: int = 0) -> control.GetLoadResponse:
        out = control.GetLoadResponse()
        for node_id, series in self._nodes.items():
            entry = out.nodes.add(node_id=node_id)
            entry.latest.CopyFrom(series.latest)
            entry.time.FromNanoseconds(int(series.time * 1e9))
            if history:
                entry.history.extend(series.history.samples(history))
        connections = self.connections()
        rates = self.request_rates()
        for task_id, task_series in self._tasks.items():
            item = out.tasks.add(task_id=task_id, connections=connections.pop(task_id, 0),
                                 requests_per_second=rates.pop(task_id, 0.0))
            item.latest.CopyFrom(task_series.latest)
            item.time.FromNanoseconds(int(task_series.time * 1e9))
            if history:
                item.history.extend(task_series.history.samples(history))
        # No load figures (yet), but mesh traffic.
        for task_id in sorted(connections.keys() | rates.keys()):
            out.tasks.add(task_id=task_id, connections=connections.get(task_id, 0),
                          requests_per_second=rates.get(task_id, 0.0))
        return out


def _share(used: int, total: int) -> float:
    return used / total if total else 0.0
