"""Worker: turns the manager's assignments into one TaskRunner per task.

A complete assignment set replaces the worker's view: runners of tasks not in
it are cancelled and every container of this node that belongs to no assigned
task is removed. Incremental sets add, update or remove single tasks. Engine
events only poke the runner of their task; a resync pokes all of them.

The session hands assignments over with submit(), which only queues them; run()
consumes them in order. Applying a set never waits on the engine: runners are
started, updated or cancelled at once, and the engine work it implies (removing
the containers of tasks no longer assigned) is left to a sweep, which retries
while the engine does not answer. So a wedged engine delays no assignment, and a
hung call in one task's runner holds up no other task.

A runner that fails unexpectedly (a bug, not an engine error) is logged with its
task id and a traceback and reports its task FAILED with the error; the worker
and every other runner carry on.
"""

from __future__ import annotations

import asyncio
import collections
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

SWEEP_RETRY_S = 2.0  # between attempts to remove unassigned containers while the engine fails


class Worker:
    def __init__(self, *, executor: Executor, reporter: StatusReporter) -> None:
        self._executor = executor
        self._reporter = reporter
        self._runners: dict[str, tuple[TaskRunner, asyncio.Task[None]]] = {}
        # Health changes the runners reported, by the new health ("healthy", "unhealthy",
        # "starting"), since the agent started: the agent's metrics.
        self.health_results: collections.Counter[str] = collections.Counter()
        self._inbox: asyncio.Queue[dispatcher.Assignments] = asyncio.Queue()
        self._sweep_due = asyncio.Event()
        # Whether a complete set arrived: before that, no container is known to be unassigned.
        self._complete = False

    def fence(self, lost_for: float) -> None:
        """Stops the tasks whose service asks to be fenced after `lost_for` seconds without the
        manager (the manager has likely started them elsewhere)."""
        for runner, _ in self._runners.values():
            if runner.fence_after_s and lost_for >= runner.fence_after_s:
                runner.fence(f"fenced: no manager for {lost_for:.0f} s")

    def running_pids(self) -> dict[str, int]:
        """Task id -> init pid of each task whose container is running."""
        return {task_id: r.pid for task_id, (r, _) in self._runners.items() if r.pid}

    def containers_running(self) -> int:
        """Tasks whose container runs (by their last status)."""
        return sum(1 for r, _ in self._runners.values() if r.running)

    def restarts(self) -> list[tuple[str, str, int]]:
        """(task id, service name, restarts in place) of every task this agent runs."""
        return [(task_id, r.task.service_name, r.restarts)
                for task_id, (r, _) in self._runners.items()]

    def submit(self, assignments: dispatcher.Assignments) -> None:
        """Queues a set for run(); never blocks (the session's read loop calls it)."""
        self._inbox.put_nowait(assignments)

    def resync(self) -> None:
        """Look at every container again (the engine may have changed behind our back)."""
        for runner, _ in self._runners.values():
            runner.poke()
        if self._complete:
            self._sweep_due.set()

    async def run(self) -> None:
        """Applies submitted sets in order and sweeps unassigned containers, until cancelled."""
        sweeper = asyncio.create_task(self._sweep_loop(), name="sweep")
        try:
            while True:
                assignments = await self._inbox.get()
                try:
                    await self.apply(assignments)
                except Exception:  # a bug here must not stop the agent from taking assignments
                    log.exception("could not apply assignments (%d tasks, %d removed)",
                                  len(assignments.tasks), len(assignments.removed))
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper

    async def apply(self, assignments: dispatcher.Assignments) -> None:
        """Applies one set now; makes no engine call."""
        if assignments.type == dispatcher.Assignments.TYPE_COMPLETE:
            wanted = {t.id for t in assignments.tasks}
            for task_id in list(self._runners):
                if task_id not in wanted:
                    await self._drop(task_id)
            self._complete = True
            self._sweep_due.set()
        else:
            for task_id in assignments.removed:
                if await self._drop(task_id) and self._complete:
                    self._sweep_due.set()  # its container may be left: look for it
        for task in assignments.tasks:
            self._upsert(task)

    def _upsert(self, task: objects.Task) -> None:
        entry = self._runners.get(task.id)
        if entry is not None:
            entry[0].update(task)
            return
        # The runner finds its container again from the task's last status (container id) or
        # by its deterministic name: create() returns the existing container.
        runner = TaskRunner(task, executor=self._executor, reporter=self._reporter,
                            health_results=self.health_results)
        self._runners[task.id] = (runner, asyncio.create_task(self._drive(runner), name=task.id))

    async def _drive(self, runner: TaskRunner) -> None:
        """Runs one runner; whatever escapes it is logged and reported, never raised (the
        worker awaits this task when it drops the runner)."""
        try:
            await runner.run()
        except Exception as err:
            log.exception("task %s: runner stopped by an unexpected error", runner.task_id)
            runner.fail_unexpectedly(err)

    async def _drop(self, task_id: str) -> bool:
        """Stops the task's runner (its container stays); whether that may leave a container
        behind: not when the runner reported the task REMOVED with its container's id, which it
        does only once it removed that container (the usual end of a task, which the manager
        then forgets)."""
        entry = self._runners.pop(task_id, None)
        status = self._reporter.latest(task_id)
        self._reporter.forget(task_id)
        if entry is None:
            return False
        removed = (status is not None and status.state == objects.TASK_STATE_REMOVED
                   and bool(status.container_id))
        _, job = entry
        job.cancel()
        try:
            await job
        except asyncio.CancelledError:
            # The runner's cancellation is expected; the worker's own (the agent stopping
            # while it waits here) must go on up, or run() would wait for the next set forever.
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
        return not removed

    async def _sweep_loop(self) -> None:
        while True:
            await self._sweep_due.wait()
            self._sweep_due.clear()
            try:
                await self._sweep()
            except ExecutorError as err:
                log.warning("could not remove unassigned containers (%s); retrying in %gs",
                            err, SWEEP_RETRY_S)
                await asyncio.sleep(SWEEP_RETRY_S)
                self._sweep_due.set()

    async def _sweep(self) -> None:
        """Removes this node's containers that belong to no task with a runner. Runners change
        only through apply(), whose sets are complete or follow a complete one, so a container
        without a runner here is one the manager no longer assigns to this node."""
        for container in await self._executor.list_containers():
            if container.task_id not in self._runners:
                log.info("removing container %s of unassigned task %s", container.name,
                         container.task_id)
                await self._executor.remove(container.container_id)

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
            entry[0].notice(event.action)

    async def close(self) -> None:
        """Stops driving tasks; containers keep running (the next agent adopts them)."""
        for task_id in list(self._runners):
            _, job = self._runners.pop(task_id)
            job.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await job
