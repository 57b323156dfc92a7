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
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from podium.v1 import control, dispatcher

HISTORY = 60
# Request rates are measured over the reports of this many seconds (at least two reports).
RATE_WINDOW_S = 2.0


L = TypeVar("L", dispatcher.TaskLoad, dispatcher.NodeLoad)


@dataclass(slots=True)
class _Series(Generic[L]):
    latest: L
    time: float
    node_id: str
    history: deque[control.LoadSample] = field(default_factory=lambda: deque(maxlen=HISTORY))


class LoadBook:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._nodes: dict[str, _Series[dispatcher.NodeLoad]] = {}
        self._tasks: dict[str, _Series[dispatcher.TaskLoad]] = {}
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
            for task_id in [
                k for k, s in self._tasks.items() if s.node_id == node_id and k not in reported
            ]:
                del self._tasks[task_id]
        for task in report.tasks:
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
        sample = control.LoadSample(cpu_cores=cpu, memory_bytes=memory, memory_share=share)
        sample.time.FromNanoseconds(int(when * 1e9))
        series.history.append(sample)

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
        for task_id in [k for k, s in self._tasks.items() if s.node_id == node_id]:
            del self._tasks[task_id]

    def snapshot(self, history: int = 0) -> control.GetLoadResponse:
        out = control.GetLoadResponse()
        for node_id, series in self._nodes.items():
            entry = out.nodes.add(node_id=node_id)
            entry.latest.CopyFrom(series.latest)
            entry.time.FromNanoseconds(int(series.time * 1e9))
            if history:
                entry.history.extend(list(series.history)[-history:])
        connections = self.connections()
        rates = self.request_rates()
        for task_id, task_series in self._tasks.items():
            item = out.tasks.add(task_id=task_id, connections=connections.pop(task_id, 0),
                                 requests_per_second=rates.pop(task_id, 0.0))
            item.latest.CopyFrom(task_series.latest)
            item.time.FromNanoseconds(int(task_series.time * 1e9))
            if history:
                item.history.extend(list(task_series.history)[-history:])
        # No load figures (yet), but mesh traffic.
        for task_id in sorted(connections.keys() | rates.keys()):
            out.tasks.add(task_id=task_id, connections=connections.get(task_id, 0),
                          requests_per_second=rates.get(task_id, 0.0))
        return out


def _share(used: int, total: int) -> float:
    return used / total if total else 0.0
