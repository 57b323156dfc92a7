"""Worker: turns the manager's assignments into one TaskRunner per task.

A complete assignment set replaces the worker's view: runners of tasks not in
it are cancelled and every container of this node that belongs to no assigned
task is removed. Incremental sets add, update or remove single tasks. Engine
events only poke the runner of their task; a resync pokes all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from podium.agent.executor import (
    ACTION_RESYNC,
    ContainerEvent,
    Executor,
    ExecutorError,
)
from podium.agent.runner import TaskRunner
from podium.agent.status import StatusReporter
from podium.v1 import dispatcher, objects

log = logging.getLogger(__name__)


class Worker:
    def __init__(self, *, executor: Executor, reporter: StatusReporter) -> None:
        self._executor = executor
        self._reporter = reporter
        self._runners: dict[str, tuple[TaskRunner, asyncio.Task[None]]] = {}
        self._lock = asyncio.Lock()

    def fence(self, lost_for: float) -> None:
        """Stops the tasks whose service asks to be fenced after `lost_for` seconds without the
        manager (the manager has likely started them elsewhere)."""
        for runner, _ in self._runners.values():
            fence_after = runner.task.spec.fence_after.ToNanoseconds() / 1e9
            if fence_after and lost_for >= fence_after:
                runner.fence(f"fenced: no manager for {lost_for:.0f} s")

    def running_pids(self) -> dict[str, int]:
        """Task id -> init pid of each task whose container is running."""
        return {task_id: r.pid for task_id, (r, _) in self._runners.items() if r.pid}

    async def apply(self, assignments: dispatcher.Assignments) -> None:
        async with self._lock:
            if assignments.type == dispatcher.Assignments.TYPE_COMPLETE:
                await self._replace(list(assignments.tasks))
            else:
                dropped = [t for t in assignments.removed if await self._drop(t)]
                if dropped:  # one listing of the engine's containers for all of them
                    for container in await self._executor.list_containers():
                        if container.task_id in dropped:
                            await self._executor.remove(container.container_id)
                for task in assignments.tasks:
                    self._upsert(task, "")

    async def _replace(self, tasks: list[objects.Task]) -> None:
        wanted = {t.id: t for t in tasks}
        containers = await self._executor.list_containers()
        for task_id in list(self._runners):
            if task_id not in wanted:
                await self._drop(task_id)
        found: dict[str, str] = {}
        for container in containers:
            if container.task_id in wanted:
                found[container.task_id] = container.container_id
            else:
                log.info(
                    "removing container %s of unassigned task %s", container.name, container.task_id
                )
                await self._executor.remove(container.container_id)
        for task in tasks:
            self._upsert(task, found.get(task.id, ""))

    def _upsert(self, task: objects.Task, container_id: str) -> None:
        entry = self._runners.get(task.id)
        if entry is not None:
            entry[0].update(task)
            return
        runner = TaskRunner(
            task, executor=self._executor, reporter=self._reporter, container_id=container_id,
        )
        self._runners[task.id] = (runner, asyncio.create_task(runner.run(), name=task.id))

    async def _drop(self, task_id: str) -> bool:
        """Stops the task's runner (its container stays); whether it had one."""
        entry = self._runners.pop(task_id, None)
        self._reporter.forget(task_id)
        if entry is None:
            return False
        _, job = entry
        job.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await job
        return True

    async def follow_events(self) -> None:
        """Routes engine events to runners until cancelled."""
        async for event in self._executor.events():
            self._route(event)

    def _route(self, event: ContainerEvent) -> None:
        if event.action == ACTION_RESYNC:
            for runner, _ in self._runners.values():
                runner.poke()
            return
        entry = self._runners.get(event.task_id)
        if entry is not None:
            entry[0].poke()

    async def close(self) -> None:
        """Stops driving tasks; containers keep running (the next agent adopts them)."""
        for task_id in list(self._runners):
            _, job = self._runners.pop(task_id)
            job.cancel()
            with contextlib.suppress(asyncio.CancelledError, ExecutorError):
                await job
