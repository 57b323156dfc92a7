"""The worker on the in-memory executor: a hung engine call or a faulty runner holds up no
other task, and assignment handling never waits on the engine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import pytest

from podium.agent.status import StatusReporter
from podium.agent.worker import Worker
from podium.v1 import dispatcher, objects
from tests.fakes import FakeExecutor
from tests.helpers import consistently_async, eventually_async

RUNNING = objects.TASK_STATE_RUNNING


def _task(task_id: str, desired: int = RUNNING) -> objects.Task:
    task = objects.Task(id=task_id, service_id="s1", service_name="web", slot=int(task_id[1:]),
                        desired_state=desired)  # type: ignore[arg-type]
    task.spec.container.image = "app:1"
    return task


def _complete(*tasks: objects.Task) -> dispatcher.Assignments:
    return dispatcher.Assignments(type=dispatcher.Assignments.TYPE_COMPLETE, tasks=list(tasks))


def _incremental(*tasks: objects.Task, removed: tuple[str, ...] = ()) -> dispatcher.Assignments:
    return dispatcher.Assignments(type=dispatcher.Assignments.TYPE_INCREMENTAL, tasks=list(tasks),
                                  removed=list(removed))


def _state(reporter: StatusReporter, task_id: str) -> int:
    status = reporter.latest(task_id)
    return status.state if status is not None else -1


@contextlib.asynccontextmanager
async def _running(worker: Worker) -> AsyncIterator[None]:
    job = asyncio.create_task(worker.run())
    try:
        yield
    finally:
        job.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await job
        await worker.close()


async def test_applying_a_set_never_waits_on_the_engine() -> None:
    executor, reporter = FakeExecutor(call_timeout=60), StatusReporter()
    worker = Worker(executor=executor, reporter=reporter)
    try:
        await worker.apply(_complete(_task("t1"), _task("t2")))
        await eventually_async(lambda: _state(reporter, "t1") == RUNNING
                               and _state(reporter, "t2") == RUNNING,
                               timeout=5, what="t1 and t2 running")
        executor.wedge()
        async with asyncio.timeout(1):
            await worker.apply(_complete(_task("t1")))
            await worker.apply(_incremental(removed=("t1",)))
            await worker.apply(_incremental(_task("t3")))
    finally:
        executor.unwedge()
        await worker.close()


async def test_a_hung_create_holds_up_no_other_assignment() -> None:
    executor, reporter = FakeExecutor(), StatusReporter()
    executor.hang_create.add("t1")
    worker = Worker(executor=executor, reporter=reporter)
    async with _running(worker):
        worker.submit(_complete(_task("t1")))
        await eventually_async(lambda: executor.calls.get("create", 0) >= 1,
                               timeout=5, what="t1's create called")
        # Both sets arrive while t1's create hangs: both are applied at once.
        worker.submit(_incremental(_task("t2")))
        worker.submit(_incremental(_task("t3")))
        await eventually_async(lambda: _state(reporter, "t2") == RUNNING
                               and _state(reporter, "t3") == RUNNING,
                               timeout=5, what="t2 and t3 running")
        assert _state(reporter, "t1") == objects.TASK_STATE_PREPARING
        # A removal is carried out too, although t1 still hangs.
        worker.submit(_incremental(removed=("t2",)))
        await eventually_async(lambda: {c.task_id for c in executor._containers.values()} == {"t3"},
                               timeout=5, what="t2's container removed")


async def test_assignments_are_taken_while_the_engine_is_wedged() -> None:
    executor, reporter = FakeExecutor(call_timeout=0.5), StatusReporter()
    worker = Worker(executor=executor, reporter=reporter)
    async with _running(worker):
        worker.submit(_complete(_task("t1"), _task("t2")))
        await eventually_async(lambda: _state(reporter, "t1") == RUNNING
                               and _state(reporter, "t2") == RUNNING,
                               timeout=5, what="t1 and t2 running")
        executor.wedge()
        # submit() never blocks, and the worker applies each set without waiting on the engine.
        worker.submit(_complete(_task("t1")))  # t2 no longer assigned
        worker.submit(_incremental(_task("t3")))
        await eventually_async(lambda: reporter.latest("t2") is None,
                               timeout=2, what="t2's runner dropped")
        await eventually_async(lambda: _state(reporter, "t3") == objects.TASK_STATE_PREPARING,
                               timeout=2, what="t3's runner started")
        assert len(executor._containers) == 2  # nothing could be removed yet
        executor.unwedge()
        # The sweep retries: t2's container goes once the engine answers again.
        await eventually_async(lambda: {c.task_id for c in executor._containers.values()}
                               == {"t1", "t3"},
                               timeout=10, what="t2's container removed after the engine came back")
        await eventually_async(lambda: _state(reporter, "t3") == RUNNING,
                               timeout=5, what="t3 running")
        assert _state(reporter, "t1") == RUNNING


async def test_an_unexpected_error_in_one_runner_fails_only_that_task(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Faulty(FakeExecutor):
        async def inspect(self, container_id: str) -> objects.Task | None:  # type: ignore[override]
            state = await super().inspect(container_id)
            if state is not None and state.task_id == "t1":
                raise KeyError("boom")
            return state  # type: ignore[return-value]

    executor, reporter = Faulty(), StatusReporter()
    worker = Worker(executor=executor, reporter=reporter)
    async with _running(worker):
        worker.submit(_complete(_task("t1"), _task("t2")))
        await eventually_async(lambda: _state(reporter, "t1") == objects.TASK_STATE_FAILED,
                               timeout=5, what="t1 failed")
        status = reporter.latest("t1")
        assert status is not None and status.err == "agent error: KeyError: 'boom'"
        await eventually_async(lambda: _state(reporter, "t2") == RUNNING,
                               timeout=5, what="t2 running")
        logged = [r for r in caplog.records if r.exc_info and "t1" in r.getMessage()]
        assert logged, "the error is logged with the task id and a traceback"
        # The agent carries on: new assignments are applied, and the failed task's stop and
        # removal (what the manager sends next) is still carried out.
        worker.submit(_incremental(_task("t3")))
        await eventually_async(lambda: _state(reporter, "t3") == RUNNING,
                               timeout=5, what="t3 running")
        worker.submit(_incremental(_task("t1", desired=objects.TASK_STATE_REMOVED)))
        await eventually_async(lambda: "t1" not in {c.task_id
                                                    for c in executor._containers.values()},
                               timeout=5, what="t1's container removed")
        assert _state(reporter, "t2") == RUNNING


async def test_a_runner_that_escapes_its_own_handling_is_reported_and_dropped_cleanly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    executor, reporter = FakeExecutor(), StatusReporter()
    worker = Worker(executor=executor, reporter=reporter)
    async with _running(worker):
        worker.submit(_complete(_task("t1"), _task("t2")))
        await eventually_async(lambda: _state(reporter, "t2") == RUNNING,
                               timeout=5, what="t2 running")
        # Reporting itself breaks for t1 (a fault outside the step's own handling).
        runner = worker._runners["t1"][0]

        def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("report broken")

        runner._report = broken  # type: ignore[method-assign]
        executor.crash(reporter.latest("t1").container_id)  # type: ignore[union-attr]
        runner.poke()
        await eventually_async(lambda: _state(reporter, "t1") == objects.TASK_STATE_FAILED,
                               timeout=5, what="t1 failed")
        status = reporter.latest("t1")
        assert status is not None and "report broken" in status.err
        assert any(r.exc_info for r in caplog.records if "t1" in r.getMessage())
        # Dropping the task later raises nothing into the worker.
        worker.submit(_incremental(removed=("t1",)))
        worker.submit(_incremental(_task("t3")))
        await eventually_async(lambda: _state(reporter, "t3") == RUNNING,
                               timeout=5, what="t3 running")
        assert _state(reporter, "t2") == RUNNING


async def test_forgetting_a_task_whose_container_is_removed_lists_no_container() -> None:
    """The manager forgets a task once its agent reported it REMOVED, container and all: looking
    through every container of the node again (an inspect each) would only load the engine."""
    executor, reporter = FakeExecutor(), StatusReporter()
    worker = Worker(executor=executor, reporter=reporter)
    async with _running(worker):
        worker.submit(_complete(_task("t1"), _task("t2")))
        await eventually_async(lambda: _state(reporter, "t2") == RUNNING
                               and executor.calls.get("list_containers", 0) == 1,
                               timeout=5, what="t2 running, unassigned containers swept")
        worker.submit(_incremental(_task("t1", desired=objects.TASK_STATE_REMOVED)))
        await eventually_async(lambda: _state(reporter, "t1") == objects.TASK_STATE_REMOVED,
                               timeout=5, what="t1 removed")
        worker.submit(_incremental(removed=("t1",)))
        await eventually_async(lambda: "t1" not in worker._runners, timeout=5, what="t1 dropped")
        await consistently_async(lambda: executor.calls.get("list_containers", 0) == 1,
                                 duration=0.3, what="no listing of the node's containers")
        assert "t2" in {c.task_id for c in executor._containers.values()}


async def test_engine_health_follows_the_engine() -> None:
    from podium.agent.enginehealth import EngineHealth

    executor = FakeExecutor()
    changes: list[bool] = []
    health = EngineHealth(executor=executor, period=0.05, timeout=0.2,
                          on_change=lambda: changes.append(health.unresponsive))
    job = asyncio.create_task(health.run())
    try:
        await consistently_async(lambda: not health.unresponsive and changes == [],
                                 duration=0.2, what="a healthy engine reported healthy")
        executor.wedge()
        await eventually_async(lambda: health.unresponsive, timeout=2, what="unresponsive")
        assert "within 0.2s" in health.error
        executor.unwedge()
        await eventually_async(lambda: not health.unresponsive, timeout=2, what="answering again")
        assert changes == [True, False] and health.error == ""
    finally:
        job.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await job


async def test_logging_is_quiet_about_a_healthy_engine(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    executor, reporter = FakeExecutor(), StatusReporter()
    worker = Worker(executor=executor, reporter=reporter)
    async with _running(worker):
        worker.submit(_complete(_task("t1")))
        await eventually_async(lambda: _state(reporter, "t1") == RUNNING,
                               timeout=5, what="t1 running")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_stopping_the_worker_while_it_drops_a_runner_ends_it() -> None:
    """The agent stopping (its worker cancelled) while a removal waits for a runner to end:
    the worker must end too, not swallow its own cancellation and wait for the next set."""
    executor, reporter = FakeExecutor(), StatusReporter()
    worker = Worker(executor=executor, reporter=reporter)
    job = asyncio.create_task(worker.run())
    try:
        worker.submit(_complete(_task("t1")))
        await eventually_async(lambda: _state(reporter, "t1") == RUNNING, what="t1 running")
        worker.submit(_incremental(removed=("t1",)))
        for _ in range(1000):  # until the worker popped t1's runner and waits for it to end
            if "t1" not in worker._runners:
                break
            await asyncio.sleep(0)
        job.cancel()
        done, _ = await asyncio.wait({job}, timeout=5)
        assert done and job.cancelled(), "the worker swallowed its cancellation"
    finally:
        job.cancel()
        await worker.close()
