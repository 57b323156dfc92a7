"""LoadStream: turns load samples into the LoadReports an agent streams to the manager.

Every period the node's figures travel; a task's figures travel only when they moved
noticeably since they were last sent (CPU_STEP cores, MEMORY_STEP bytes), and every
`summary_every`-th report lists every task, so only changes and periodic summaries cross the
network. The mesh's figures, small maps, travel in every report: `connections` (task id ->
connections open through this node's mesh) and `requests` (task id -> requests forwarded through
it since the agent started, counters that only grow; the manager computes rates from them).
Sampling reads cgroup files (podium.agent.sampler): one cheap synchronous pass per period.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from podium.agent.sampler import LoadSampler, TaskSample
from podium.v1 import dispatcher

CPU_STEP = 0.02
MEMORY_STEP = 1 << 20


class LoadStream:
    def __init__(self, *, sampler: LoadSampler, running: Callable[[], dict[str, int]],
                 connections: Callable[[], dict[str, int]] = dict,
                 requests: Callable[[], dict[str, int]] = dict,
                 mesh_counted: bool = True,
                 summary_every: int = 10) -> None:
        self._mesh_counted = mesh_counted
        self._connections = connections
        self._requests = requests
        self._sampler = sampler
        self._running = running
        self._summary_every = summary_every
        self._count = 0
        self._sent: dict[str, TaskSample] = {}

    def next_report(self) -> dispatcher.LoadReport:
        pids = self._running()
        for task_id in [t for t in self._sent if t not in pids]:
            del self._sent[task_id]
            self._sampler.untrack(task_id)
        for task_id, pid in pids.items():
            self._sampler.track(task_id, pid)
        node, tasks = self._sampler.sample(time.time())
        summary = self._count % self._summary_every == 0
        self._count += 1
        report = dispatcher.LoadReport(summary=summary, mesh_uncounted=not self._mesh_counted)
        report.time.FromNanoseconds(time.time_ns())
        report.node.cpu_cores_used = node.cpu_cores_used
        report.node.cpu_cores_total = node.cpu_cores_total
        report.node.memory_used_bytes = node.memory_used_bytes
        report.node.memory_total_bytes = node.memory_total_bytes
        report.node.task_count = len(pids)
        report.connections.update(self._connections())
        report.requests.update(self._requests())
        for sample in tasks:
            last = self._sent.get(sample.task_id)
            if not summary and last is not None and not _moved(last, sample):
                continue
            self._sent[sample.task_id] = sample
            share = sample.memory_bytes / sample.memory_limit if sample.memory_limit else 0.0
            report.tasks.add(task_id=sample.task_id, cpu_cores=sample.cpu_cores,
                             memory_bytes=sample.memory_bytes, memory_share=share)
        return report


def _moved(a: TaskSample, b: TaskSample) -> bool:
    return (abs(a.cpu_cores - b.cpu_cores) >= CPU_STEP
            or abs(a.memory_bytes - b.memory_bytes) >= MEMORY_STEP)
