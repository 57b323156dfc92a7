"""LoadBook: the latest load of every node and task, with a short history, in memory.

Agents report load over their sessions (the dispatcher records it here); the control API reads
it. Load is not persisted: it is a measurement, refreshed every period, and a restarted manager
has it again within a period of its agents reconnecting. Tasks missing from a non-summary report
keep their previous figures; a summary report replaces the node's whole task set.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from podium.v1 import control, dispatcher

HISTORY = 60


L = TypeVar("L", dispatcher.TaskLoad, dispatcher.NodeLoad)


@dataclass(slots=True)
class _Series(Generic[L]):
    latest: L
    time: float
    node_id: str
    history: deque[control.LoadSample] = field(default_factory=lambda: deque(maxlen=HISTORY))


class LoadBook:
    def __init__(self) -> None:
        self._nodes: dict[str, _Series[dispatcher.NodeLoad]] = {}
        self._tasks: dict[str, _Series[dispatcher.TaskLoad]] = {}
        # Node id -> task id -> connections open through that node's mesh.
        self._connections: dict[str, dict[str, int]] = {}

    def record(self, node_id: str, report: dispatcher.LoadReport) -> None:
        when = report.time.ToNanoseconds() / 1e9
        self._connections[node_id] = dict(report.connections)
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

    def forget_node(self, node_id: str) -> None:
        self._nodes.pop(node_id, None)
        self._connections.pop(node_id, None)
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
        connections: dict[str, int] = {}
        for per_task in self._connections.values():
            for task_id, count in per_task.items():
                connections[task_id] = connections.get(task_id, 0) + count
        for task_id, task_series in self._tasks.items():
            item = out.tasks.add(task_id=task_id, connections=connections.pop(task_id, 0))
            item.latest.CopyFrom(task_series.latest)
            item.time.FromNanoseconds(int(task_series.time * 1e9))
            if history:
                item.history.extend(list(task_series.history)[-history:])
        for task_id, count in connections.items():  # no load figures (yet), but connections
            out.tasks.add(task_id=task_id, connections=count)
        return out


def _share(used: int, total: int) -> float:
    return used / total if total else 0.0
