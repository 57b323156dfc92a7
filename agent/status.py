"""StatusReporter: the latest status of each task, until the manager has it.

Only the newest status of a task matters (a later state supersedes an earlier
one), so the reporter keeps one per task and a set of those not yet sent. When
a session (re)opens, everything is marked unsent: the manager ignores what it
already has.
"""

from __future__ import annotations

import asyncio

from podium.v1 import dispatcher, objects


class StatusReporter:
    def __init__(self) -> None:
        self._latest: dict[str, objects.TaskStatus] = {}
        self._unsent: set[str] = set()
        self._changed = asyncio.Event()

    def report(self, task_id: str, status: objects.TaskStatus) -> None:
        self._latest[task_id] = status
        self._unsent.add(task_id)
        self._changed.set()

    def latest(self, task_id: str) -> objects.TaskStatus | None:
        return self._latest.get(task_id)

    def forget(self, task_id: str) -> None:
        self._latest.pop(task_id, None)
        self._unsent.discard(task_id)

    def resend_all(self) -> None:
        self._unsent = set(self._latest)
        self._changed.set()

    async def next_batch(self, limit: int = 500) -> dispatcher.StatusReport:
        """Waits for unsent statuses and takes up to `limit` of them."""
        while not self._unsent:
            self._changed.clear()
            await self._changed.wait()
        report = dispatcher.StatusReport()
        for task_id in list(self._unsent)[:limit]:
            self._unsent.discard(task_id)
            report.updates.add(task_id=task_id, status=self._latest[task_id])
        return report
