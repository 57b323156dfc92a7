"""Control.Logs on the in-process cluster: container output from the agents through the manager,
each line with its task; tail and since; following output and tasks that start meanwhile; what a
caller is told when a task's output cannot be read; and output that never crowds the session."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from podium.v1 import control, dispatcher, objects
from tests.helpers import eventually_async
from tests.inprocess import InProcessCluster

STDERR = dispatcher.LogLine.STREAM_STDERR


def container_of(mini: InProcessCluster, task: objects.Task) -> tuple[Any, str]:
    """The fake executor holding the task's container, and the container's id."""
    for executor in mini.executors.values():
        for state in executor._containers.values():
            if state.task_id == task.id:
                return executor, state.container_id
    raise AssertionError(f"no container for task {task.id}")


def write(mini: InProcessCluster, task: objects.Task, *lines: str, stderr: bool = False) -> None:
    executor, container_id = container_of(mini, task)
    for line in lines:
        executor.write(container_id, line, stderr=stderr)


async def read_all(mini: InProcessCluster, ref: str, **fields: Any) -> list[control.LogsResponse]:
    call = mini.api.Logs(control.LogsRequest(ref=ref, **fields), timeout=10)
    return [response async for response in call]


def lines_by_task(responses: list[control.LogsResponse]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for response in responses:
        found.setdefault(response.task_name, []).extend(
            line.text.decode() for line in response.lines)
    return found


async def test_a_service_s_output_comes_from_every_node_each_line_with_its_task(
        mini: InProcessCluster) -> None:
    await mini.create("web", replicas=2)
    tasks = sorted(await mini.wait_running("web", 2), key=lambda t: t.slot)
    assert len(set(mini.placement("web").values())) == 2  # one on each node
    write(mini, tasks[0], "one-a", "one-b")
    write(mini, tasks[1], "two-a")
    write(mini, tasks[1], "two-oops", stderr=True)

    responses = await read_all(mini, "web")
    assert lines_by_task(responses) == {"web.1": ["one-a", "one-b"],
                                        "web.2": ["two-a", "two-oops"]}
    names = {n.id: n.description.name for n in mini.store_view.nodes()}
    for response in responses:
        assert response.task_id in {t.id for t in tasks}
        assert names[response.node_id] == mini.placement("web")[response.task_id]
        assert not response.error
    streams = {line.text.decode(): line.stream for r in responses for line in r.lines}
    assert streams["two-oops"] == STDERR and streams["two-a"] != STDERR

    # One task by its name, the last line only, and only what came after a moment.
    assert lines_by_task(await read_all(mini, "web.2", tail=1)) == {"web.2": ["two-oops"]}
    since = control.LogsRequest().since
    since.GetCurrentTime()
    write(mini, tasks[0], "later")
    assert lines_by_task(await read_all(mini, "web", since=since)) == {"web.1": ["later"]}


async def test_refs_that_name_nothing_are_refused_naming_the_ref(mini: InProcessCluster) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await read_all(mini, "nosuch")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no service or task 'nosuch'" in (caught.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await read_all(mini, "")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_following_gets_new_lines_and_tasks_that_start_meanwhile(
        mini: InProcessCluster) -> None:
    await mini.create("web", replicas=1)
    (first,) = await mini.wait_running("web", 1)
    write(mini, first, "before")
    call = mini.api.Logs(control.LogsRequest(ref="web", follow=True))
    seen: list[tuple[str, str]] = []

    async def collect(responses: AsyncIterator[control.LogsResponse]) -> None:
        async for response in responses:
            seen.extend((response.task_name, line.text.decode()) for line in response.lines)

    reader = asyncio.create_task(collect(call))
    try:
        await eventually_async(lambda: ("web.1", "before") in seen, what="the earlier line")
        write(mini, first, "after")
        await eventually_async(lambda: ("web.1", "after") in seen, what="a new line")
        await mini.scale("web", 2)
        tasks = await mini.wait_running("web", 2)
        (second,) = [t for t in tasks if t.id != first.id]
        write(mini, second, "hello from the new one")
        await eventually_async(lambda: ("web.2", "hello from the new one") in seen,
                               what="the new task's line")
        assert not reader.done()
    finally:
        call.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    # The caller went: every node stops reading for it, and the manager forgets it.
    assert mini.manager is not None
    await eventually_async(
        lambda: all(a._logs.streams == 0 for a in mini.agents.values())
        and mini.manager.dispatcher.log_streams == 0,
        what="log streams closed on both sides")


async def test_a_task_whose_node_is_gone_is_answered_with_the_reason(
        mini: InProcessCluster) -> None:
    await mini.create("web", replicas=2)
    tasks = await mini.wait_running("web", 2)
    on_b = [t for t in tasks if mini.placement("web")[t.id] == "node-b"]
    write(mini, on_b[0], "unreadable now")
    # The node's agent stops (a restart): its tasks are held, live, but unreadable.
    await mini.stop_agent("node-b")
    responses = await read_all(mini, "web")
    errors = {r.task_name: r.error for r in responses if r.error}
    assert list(errors.values()) == ["node node-b is not connected: its output cannot be read now"]


async def test_a_flood_of_output_never_crowds_out_the_session(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from podium.agent import logs
    from tests.inprocess import in_process_cluster

    # A small outbox and small chunks: without flow control, 4,000 chunks would overflow it
    # many times over.
    monkeypatch.setattr(logs, "CHUNK_LINES", 5)
    def small_outbox(agent: Any) -> None:
        agent._session._outbox_limit = 50

    async with in_process_cluster(tmp_path, agents=1, prepare=small_outbox) as mini:
        await mini.create("chatty")
        (task,) = await mini.wait_running("chatty", 1)
        write(mini, task, *(f"line {i:05d}" for i in range(20_000)))
        node = mini.store_view.node_by_name("node-a")
        assert node is not None
        opened = node.status.timestamp.ToNanoseconds()
        responses = await read_all(mini, "chatty")
        assert lines_by_task(responses)["chatty.1"] == [f"line {i:05d}" for i in range(20_000)]
        node = mini.store_view.node_by_name("node-a")
        assert node is not None and node.status.timestamp.ToNanoseconds() == opened, \
            "the session was reopened"
