"""TaskRunner: drives one task's container toward the task's desired state.

Each step compares the desired state the manager sent with what the engine says of the
container, does at most one thing about it, and reports the task's new status. Steps are
idempotent, so a runner can start over at any point: after an agent restart it adopts the
running container it finds instead of creating another.

The runner also keeps the container healthy on its own, whether or not the manager is
reachable: a container that stops without being asked to, or whose check (engine-run
HEALTHCHECK or agent-run probe) reports it unhealthy, is restarted in place as the restart
policy allows (podium.agent.restarts). The task stays RUNNING across restarts, with `restarts`
counted and each one's reason in its history. When the policy says no more, the task ends
(COMPLETE or FAILED) and the manager decides what follows.

An engine error in a step is retried (ENGINE_RETRY_S later). Any other exception in a step is
a fault of the agent: it is logged with the task id and a traceback, the task is reported
FAILED with the error's text (the manager replaces it), and the runner keeps following the
desired state, so the manager's stop or remove of the failed task is still carried out.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections import deque

from podium.agent._netstat import established
from podium.agent.executor import (
    ACTION_CREATE,
    ACTION_START,
    ContainerState,
    Executor,
    ExecutorError,
)
from podium.agent.probe import HealthTracker, Prober
from podium.agent.restarts import RestartBook
from podium.agent.status import StatusReporter
from podium.rules.routing import ingress_ports
from podium.v1 import objects

log = logging.getLogger(__name__)

RUNNING = objects.TASK_STATE_RUNNING
SHUTDOWN = objects.TASK_STATE_SHUTDOWN
REMOVED = objects.TASK_STATE_REMOVED
FAILED = objects.TASK_STATE_FAILED
DEFAULT_STOP_GRACE_S = 10.0
ENGINE_RETRY_S = 1.0
HISTORY = 20
# Time for every agent to drop a replica from its routing table (the mesh's goal is 1 s).
DEREGISTER_S = 1.0
DRAIN_POLL_S = 0.1

_ENGINE_HEALTH: dict[str, int] = {
    "starting": objects.HEALTH_STARTING,
    "healthy": objects.HEALTH_HEALTHY,
    "unhealthy": objects.HEALTH_UNHEALTHY,
}
_HEALTH_NAMES: dict[int, str] = {v: k for k, v in _ENGINE_HEALTH.items()}


def stop_grace(task: objects.Task) -> float:
    if task.spec.container.HasField("stop_grace_period"):
        return task.spec.container.stop_grace_period.ToNanoseconds() / 1e9
    return DEFAULT_STOP_GRACE_S


def exit_reason(state: ContainerState) -> tuple[bool, str]:
    """Whether a stopped container failed, and why."""
    code = state.exit_code if state.exit_code is not None else -1
    if state.oom_killed:
        return True, f"out of memory (exit code {code})"
    if state.error:
        return True, state.error
    return code != 0, f"exit code {code}"


class TaskRunner:
    def __init__(
        self,
        task: objects.Task,
        *,
        executor: Executor,
        reporter: StatusReporter,
        health_results: collections.Counter[str] | None = None,
    ) -> None:
        """`health_results`: counts each change of the task's health, by its new health."""
        self._health_results = health_results
        self.task = task
        self.fence_after_s = _fence_after(task)
        self._executor = executor
        self._reporter = reporter
        self._status = objects.TaskStatus()
        self._status.CopyFrom(reporter.latest(task.id) or task.status)
        self._container_id = self._status.container_id
        self._history: deque[objects.TaskEvent] = deque(self._status.history, maxlen=HISTORY)
        self._book = RestartBook(
            policy=task.spec.restart_policy, prior_attempts=task.attempt,
            restarts=self._status.restarts,
        )
        # When a pending restart is due, on the event loop's clock, and the timer that wakes us.
        self._restart_at: float | None = None
        self._restart_timer: asyncio.TimerHandle | None = None
        self._restart_reason = ""
        self._prober: tuple[Prober, asyncio.Task[None], int] | None = None
        self.pid = 0
        self._fenced = ""
        # Whether the task was in the mesh's rotation since its last stop (then a stop drains).
        self._was_ready = self._status.ready
        self._wake = asyncio.Event()
        self._wake.set()
        self._starting = False  # within _start(): the engine's create/start events are ours

    @property
    def running(self) -> bool:
        """Whether the task's last status, as reported, is RUNNING."""
        return self._status.state == RUNNING

    @property
    def restarts(self) -> int:
        """Restarts in place since the task was assigned (the restart policy's count)."""
        return self._book.restarts

    @property
    def task_id(self) -> str:
        return self.task.id

    def update(self, task: objects.Task) -> None:
        self.task = task
        self.fence_after_s = _fence_after(task)
        self._wake.set()

    def fence(self, reason: str) -> None:
        """Stop the task on this agent's own authority: it may be running elsewhere by now."""
        if not self._fenced:
            self._fenced = reason
            self._wake.set()

    def poke(self) -> None:
        """Something may have changed in the engine: look again."""
        self._wake.set()

    def notice(self, action: str) -> None:
        """An engine event of this task's container. Events the runner's own calls caused are
        not looked into again (an inspect each costs the engine, the bottleneck of a deploy):
        a create, and a start while it is starting the container or already saw it running."""
        if action == ACTION_CREATE or (action == ACTION_START and (self._starting or self.pid)):
            return
        self.poke()

    async def run(self) -> None:
        try:
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
                except Exception as err:
                    log.exception("task %s: unexpected error", self.task.id)
                    self.fail_unexpectedly(err)
                    # No immediate retry: the same step would likely fail the same way. The
                    # next wake (an update from the manager, an engine event) tries again.
                    await asyncio.sleep(ENGINE_RETRY_S)
        finally:
            await self._stop_prober()

    def fail_unexpectedly(self, err: BaseException) -> None:
        """Reports the task FAILED because of an agent fault (an exception no step expects)."""
        text = f"agent error: {type(err).__name__}: {err}"
        if self._status.state > RUNNING:
            return  # ended already; the manager is replacing it
        try:
            self._report(FAILED, "agent error", err=text)
        except Exception:  # reporting itself is broken: report the bare minimum
            log.exception("task %s: could not report the error normally", self.task.id)
            status = objects.TaskStatus(state=FAILED, message="agent error", err=text,
                                        container_id=self._container_id)
            status.timestamp.FromNanoseconds(time.time_ns())
            self._status = status
            self._reporter.report(self.task.id, status)

    # -- reporting -------------------------------------------------------------------------

    def _event(self, kind: str, message: str) -> None:
        event = objects.TaskEvent(kind=kind, message=message)
        event.time.FromNanoseconds(time.time_ns())
        self._history.append(event)

    def _report(self, state: int, message: str = "", *, err: str = "",
                container: ContainerState | None = None,
                health: int = objects.HEALTH_NONE) -> None:
        status = objects.TaskStatus()
        status.CopyFrom(self._status)
        if state != status.state:
            self._event("state", f"{objects.TaskState.Name(state)[11:].lower()}: {err or message}")
        if health != status.health and state == RUNNING:
            name = _HEALTH_NAMES.get(health, "none")
            tracker_error = self._prober[0].tracker.last_error if self._prober else ""
            detail = (container.health_output if container else "") or tracker_error
            self._event("health", f"{name}: {detail}" if detail and name != "healthy" else name)
            if self._health_results is not None:
                self._health_results[name] += 1
        status.state = state  # type: ignore[assignment]
        status.message = message
        status.err = err
        status.container_id = self._container_id
        status.health = health  # type: ignore[assignment]
        status.ready = state == RUNNING and health in (objects.HEALTH_NONE, objects.HEALTH_HEALTHY)
        self._was_ready = self._was_ready or status.ready
        status.restarts = self._book.restarts
        del status.history[:]
        status.history.extend(self._history)
        if container is not None:
            del status.ports[:]
            status.ports.extend(container.ports)
            status.container_addr = container.ip_address if container.running else ""
            if container.exit_code is not None:
                status.exit_code = container.exit_code
        if status == self._status:
            return
        # Not GetCurrentTime(): it goes through a datetime, about 15 times as slow, and a burst
        # of new tasks stamps several statuses and events for each.
        status.timestamp.FromNanoseconds(time.time_ns())
        self._status = status
        self._reporter.report(self.task.id, status)

    # -- steps -----------------------------------------------------------------------------

    async def _step(self) -> None:
        desired = self.task.desired_state
        state = self._status.state
        if self._fenced and desired <= RUNNING:
            desired = SHUTDOWN
        if desired > RUNNING:
            await self._stop_prober()
            self._restart_at = None
            if self._container_id:
                if not self._fenced:
                    await self._drain()
                await self._executor.stop(self._container_id, stop_grace(self.task))
                if desired >= REMOVED:
                    await self._executor.remove(self._container_id)
            if desired >= REMOVED:
                self._report(REMOVED, "container removed")
            elif state <= RUNNING:
                self._report(SHUTDOWN, self._fenced or "stopped")
            return
        if state > RUNNING:
            return  # ended; the manager decides what follows
        if self._restart_at is not None:
            if asyncio.get_running_loop().time() < self._restart_at:
                self._arm_restart_timer()  # woken early: wait for the rest of the delay
                return
            self._restart_at = None
            await self._start(restart=True)
            return
        container = await self._executor.inspect(self._container_id) if self._container_id else None
        if container is None:
            if state == RUNNING:
                self._report(FAILED, "container vanished", err="container was removed")
            else:
                await self._start(restart=False)
            return
        if container.running:
            await self._watch_running(container)
        elif container.finished_at:
            failed, reason = exit_reason(container)
            await self._after_stop(container, failed=failed, reason=reason)
        else:
            await self._start(restart=False)

    async def _watch_running(self, container: ContainerState) -> None:
        self.pid = container.pid
        health: int = objects.HEALTH_NONE
        if self.task.spec.HasField("probe"):
            health = self._ensure_prober(container).tracker.state
        elif container.health:
            health = _ENGINE_HEALTH.get(container.health, objects.HEALTH_NONE)
        if health == objects.HEALTH_UNHEALTHY:
            reason = "unhealthy"
            if self._prober is not None and self._prober[0].tracker.last_error:
                reason += f": {self._prober[0].tracker.last_error}"
            elif container.health_output:
                reason += f": {container.health_output}"
            self._report(RUNNING, reason, container=container, health=health)
            await self._stop_prober()
            await self._drain()
            await self._executor.stop(self._container_id, stop_grace(self.task))
            stopped = await self._executor.inspect(self._container_id) or container
            await self._after_stop(stopped, failed=True, reason=reason)
            return
        self._report(RUNNING, "running", container=container, health=health)

    async def _drain(self) -> None:
        """Before a stop: leave the mesh first. Gives every agent DEREGISTER_S to drop the replica
        from its routing table, then lets connections already open to its published ports finish,
        for up to the stop grace period; only then is the container signalled."""
        targets = {p.target_port for p in ingress_ports(self.task.spec)}
        if not targets or not self.pid or not self._was_ready:
            return
        self._was_ready = False
        grace = stop_grace(self.task)
        deadline = time.monotonic() + grace
        await asyncio.sleep(min(DEREGISTER_S, grace))
        # Polled: the kernel offers no notification for another namespace's sockets closing.
        for _ in range(int(grace / DRAIN_POLL_S) + 1):
            if time.monotonic() >= deadline or not established(self.pid, targets):
                break
            await asyncio.sleep(DRAIN_POLL_S)

    async def _after_stop(self, container: ContainerState | None, *, failed: bool,
                          reason: str) -> None:
        """The container stopped without being asked to (or could not be started again):
        restart it or end the task."""
        self.pid = 0
        await self._stop_prober()
        ran_for = 0.0
        if container is not None:
            ran_for = (container.finished_at or time.time()) - (container.started_at or time.time())
        now = time.time()
        verdict = self._book.decide(failed=failed, ran_for=max(ran_for, 0.0), now=now)
        if not verdict.restart:
            final = FAILED if failed else objects.TASK_STATE_COMPLETE
            error = reason if failed else ""
            message = f"{reason}; not restarted: {verdict.reason}"
            self._report(final, message, err=error, container=container)
            return
        self._book.record(ran_for=max(ran_for, 0.0), now=now)
        self._restart_reason = reason
        self._event("restart", f"restart {self._book.restarts} in {verdict.delay:g}s: {reason}")
        self._report(RUNNING, f"restarting in {verdict.delay:g}s after {reason}",
                     container=container, health=objects.HEALTH_NONE)
        self._restart_at = asyncio.get_running_loop().time() + verdict.delay
        self._arm_restart_timer()

    def _arm_restart_timer(self) -> None:
        if self._restart_timer is not None:
            self._restart_timer.cancel()
        assert self._restart_at is not None
        self._restart_timer = asyncio.get_running_loop().call_at(self._restart_at, self._wake.set)

    async def _start(self, *, restart: bool) -> None:
        self._starting = True
        try:
            await self._start_container(restart=restart)
        finally:
            self._starting = False

    async def _start_container(self, *, restart: bool) -> None:
        if not restart and self._status.state < objects.TASK_STATE_PREPARING:
            self._report(objects.TASK_STATE_PREPARING, "creating container")
        try:
            if not restart:
                self._container_id = await self._executor.create(self.task)
                self._report(objects.TASK_STATE_STARTING, "starting container")
            await self._executor.start(self._container_id)
        except ExecutorError as err:
            if restart:  # the container exists: a failed restart is one more failure
                await self._after_stop(None, failed=True, reason=f"restart failed: {err}")
            else:
                self._report(FAILED, "could not start", err=str(err))
            return
        container = await self._executor.inspect(self._container_id)
        if container is None:
            self._report(FAILED, "container vanished", err="container was removed")
        elif container.running:
            await self._watch_running(container)
        else:
            failed, reason = exit_reason(container)
            await self._after_stop(container, failed=failed, reason=reason)

    # -- agent-run probe -------------------------------------------------------------------

    def _ensure_prober(self, container: ContainerState) -> Prober:
        started = container.started_at or time.time()
        key = int(started * 1e6)
        if self._prober is not None and self._prober[2] == key:
            return self._prober[0]
        if self._prober is not None:
            self._prober[1].cancel()
        # The tracker counts start_period from the container's start, on the monotonic clock.
        started_mono = time.monotonic() - max(0.0, time.time() - started)
        prober = Prober(probe=self.task.spec.probe, address=container.ip_address or "127.0.0.1",
                        started_at=started_mono, on_change=self._on_health)
        self._prober = (prober, asyncio.create_task(prober.run()), key)
        return prober

    def _on_health(self, tracker: HealthTracker) -> None:
        self._wake.set()

    async def _stop_prober(self) -> None:
        if self._prober is None:
            return
        _, job, _ = self._prober
        self._prober = None
        job.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await job


def _fence_after(task: objects.Task) -> float:
    """Seconds without the manager after which the task is stopped (0: never). Read once per
    spec: an agent without a session asks every half second, for every task."""
    return task.spec.fence_after.ToNanoseconds() / 1e9
