"""The task runner on the in-memory executor: restarts in place, and when it gives up."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from podium.agent.runner import TaskRunner
from podium.agent.status import StatusReporter
from podium.v1 import objects
from tests.fakes import FakeExecutor
from tests.helpers import eventually_async


def _task(**policy: int) -> objects.Task:
    task = objects.Task(id="t1", service_id="s1", service_name="web", slot=1,
                        desired_state=objects.TASK_STATE_RUNNING)
    task.spec.container.image = "app:1"
    for key, value in policy.items():
        setattr(task.spec.restart_policy, key, value)
    return task


async def test_a_crashing_container_is_restarted_with_growing_delays() -> None:
    executor, reporter = FakeExecutor(), StatusReporter()
    runner = TaskRunner(_task(), executor=executor, reporter=reporter)
    job = asyncio.create_task(runner.run())

    def up() -> bool:
        status = reporter.latest("t1")
        return (status is not None and status.state == objects.TASK_STATE_RUNNING
                and status.message == "running")

    try:
        downtimes = []
        for n in range(1, 4):
            await eventually_async(up, timeout=10, what=f"running before crash {n}")
            status = reporter.latest("t1")
            assert status is not None
            executor.crash(status.container_id, exit_code=1)
            crashed = time.monotonic()
            runner.poke()  # as the engine's die event would
            await eventually_async(lambda n=n: (s := reporter.latest("t1")) is not None
                                   and s.restarts == n and up(), timeout=10,
                                   what=f"restart {n}")
            downtimes.append(time.monotonic() - crashed)
        # Delays 0, 1 and 2 s: each restart waits longer than the one before.
        assert downtimes[0] < 0.5 < 0.9 < downtimes[1] < downtimes[2], downtimes
        status = reporter.latest("t1")
        assert status is not None and status.exit_code == 1
        assert [e.kind for e in status.history].count("restart") == 3
    finally:
        job.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await job


async def test_condition_none_ends_the_task() -> None:
    executor, reporter = FakeExecutor(), StatusReporter()
    runner = TaskRunner(_task(condition=objects.RestartPolicy.CONDITION_NONE),
                        executor=executor, reporter=reporter)
    job = asyncio.create_task(runner.run())
    try:
        await eventually_async(lambda: (s := reporter.latest("t1")) is not None
                               and s.state == objects.TASK_STATE_RUNNING, timeout=10,
                               what="running")
        status = reporter.latest("t1")
        assert status is not None
        executor.crash(status.container_id, exit_code=3)
        runner.poke()
        await eventually_async(lambda: (s := reporter.latest("t1")) is not None
                               and s.state == objects.TASK_STATE_FAILED, timeout=10,
                               what="failed")
        status = reporter.latest("t1")
        assert status is not None and status.restarts == 0 and status.err == "exit code 3"
    finally:
        job.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await job


async def test_an_unexpected_error_fails_the_task_and_the_runner_carries_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    executor, reporter = FakeExecutor(), StatusReporter()
    runner = TaskRunner(_task(), executor=executor, reporter=reporter)
    job = asyncio.create_task(runner.run())
    try:
        await eventually_async(lambda: (s := reporter.latest("t1")) is not None
                               and s.state == objects.TASK_STATE_RUNNING, timeout=10,
                               what="running")
        executor.fail["inspect"] = KeyError("boom")  # a fault no step expects
        runner.poke()
        await eventually_async(lambda: (s := reporter.latest("t1")) is not None
                               and s.state == objects.TASK_STATE_FAILED, timeout=10,
                               what="failed")
        status = reporter.latest("t1")
        assert status is not None and status.err == "agent error: KeyError: 'boom'"
        assert any(r.exc_info and "t1" in r.getMessage() for r in caplog.records)
        assert not job.done()
        # The manager then removes the failed task: the runner still carries that out.
        del executor.fail["inspect"]
        task = _task()
        task.desired_state = objects.TASK_STATE_REMOVED
        runner.update(task)
        await eventually_async(lambda: (s := reporter.latest("t1")) is not None
                               and s.state == objects.TASK_STATE_REMOVED, timeout=10,
                               what="removed")
        assert await executor.list_containers() == []
    finally:
        job.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await job
