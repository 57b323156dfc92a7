"""TaskRunner: drives one task's container toward the task's desired state.

Each step compares the desired state the manager sent with what the engine
says of the container, does at most one thing about it, and reports the
task's new status. Steps are idempotent, so a runner can start over at any
point: after an agent restart it adopts the running container it finds
instead of creating another. A task whose container exited is finished: the
runner reports it and leaves the restart to the manager.
"""

from __future__ import annotations

import asyncio
import logging

from podium.agent.executor import ContainerState, Executor, ExecutorError
from podium.agent.reporter import Reporter
from podium.v1 import objects

log = logging.getLogger(__name__)

S = objects
RUNNING = S.TASK_STATE_RUNNING
SHUTDOWN = S.TASK_STATE_SHUTDOWN
REMOVED = S.TASK_STATE_REMOVED
DEFAULT_STOP_GRACE_S = 10.0
ENGINE_RETRY_S = 1.0


def stop_grace(task: objects.Task) -> float:
    if task.spec.container.HasField("stop_grace_period"):
        return task.spec.container.stop_grace_period.ToNanoseconds() / 1e9
    return DEFAULT_STOP_GRACE_S


def exited_status(state: ContainerState) -> tuple[int, str]:
    """The task state and error for a container that is not running."""
    code = state.exit_code if state.exit_code is not None else -1
    if state.oom_killed:
        return S.TASK_STATE_FAILED, f"out of memory (exit code {code})"
    if state.error:
        return S.TASK_STATE_FAILED, state.error
    if code == 0:
        return S.TASK_STATE_COMPLETE, ""
    return S.TASK_STATE_FAILED, f"exit code {code}"


class TaskRunner:
    def __init__(
        self,
        task: objects.Task,
        *,
        executor: Executor,
        reporter: Reporter,
        container_id: str = "",
    ) -> None:
        self.task = task
        self._executor = executor
        self._reporter = reporter
        self._status = objects.TaskStatus()
        self._status.CopyFrom(reporter.latest(task.id) or task.status)
        self._container_id = container_id or self._status.container_id
        self._wake = asyncio.Event()
        self._wake.set()

    @property
    def task_id(self) -> str:
        return self.task.id

    def update(self, task: objects.Task) -> None:
        self.task = task
        self._wake.set()

    def poke(self) -> None:
        """Something may have changed in the engine: look again."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._step()
            except ExecutorError as err:
                # The engine is unreachable or failed in an unexpected way: retry.
                log.warning("task %s: %s; retrying", self.task.id, err)
                await asyncio.sleep(ENGINE_RETRY_S)
                self._wake.set()

    def _report(
        self,
        state: int,
        message: str = "",
        *,
        err: str = "",
        container: ContainerState | None = None,
    ) -> None:
        status = objects.TaskStatus()
        status.CopyFrom(self._status)
        status.state = state  # type: ignore[assignment]
        status.message = message
        status.err = err
        status.container_id = self._container_id
        if container is not None:
            del status.ports[:]
            status.ports.extend(container.ports)
            if container.exit_code is not None:
                status.exit_code = container.exit_code
        if status == self._status:
            return
        status.timestamp.GetCurrentTime()
        self._status = status
        self._reporter.report(self.task.id, status)

    async def _step(self) -> None:
        desired = self.task.desired_state
        state = self._status.state
        if desired >= REMOVED:
            if self._container_id:
                await self._executor.stop(self._container_id, stop_grace(self.task))
                await self._executor.remove(self._container_id)
            self._report(REMOVED, "container removed")
            return
        if desired >= SHUTDOWN:
            if self._container_id:
                await self._executor.stop(self._container_id, stop_grace(self.task))
            if state <= RUNNING:
                self._report(SHUTDOWN, "stopped")
            return
        if state > RUNNING:
            return  # finished; the manager replaces the task
        container = await self._executor.inspect(self._container_id) if self._container_id else None
        if container is None and state == RUNNING:
            self._report(S.TASK_STATE_FAILED, "container vanished", err="container was removed")
            return
        if container is not None and container.running:
            self._report(RUNNING, "running", container=container)
            return
        if container is not None and container.finished_at:
            final, err = exited_status(container)
            self._report(final, "exited", err=err, container=container)
            return
        await self._start()

    async def _start(self) -> None:
        if self._status.state < S.TASK_STATE_PREPARING:
            self._report(S.TASK_STATE_PREPARING, "creating container")
        try:
            self._container_id = await self._executor.create(self.task)
            self._report(S.TASK_STATE_STARTING, "starting container")
            await self._executor.start(self._container_id)
        except ExecutorError as err:
            self._report(S.TASK_STATE_FAILED, "could not start", err=str(err))
            return
        container = await self._executor.inspect(self._container_id)
        if container is None:
            self._report(S.TASK_STATE_FAILED, "container vanished", err="container was removed")
        elif container.running:
            self._report(RUNNING, "running", container=container)
        else:
            final, error = exited_status(container)
            self._report(final, "exited", err=error, container=container)
