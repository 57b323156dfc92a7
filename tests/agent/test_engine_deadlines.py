"""Every call of the Docker executor has a deadline: against an engine that accepts connections
and answers nothing (a wedged dockerd), each fails with EngineTimeout instead of hanging."""

from __future__ import annotations

import asyncio
import pathlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from podium.agent import _docker
from podium.agent._docker import DockerExecutor
from podium.agent.executor import EngineTimeout
from podium.v1 import objects
from tests.helpers import consistently_async


@pytest.fixture
async def silent_engine(tmp_path: pathlib.Path) -> AsyncIterator[str]:
    """A unix socket that takes requests and never replies."""
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        while await reader.read(65536):
            pass

    path = tmp_path / "docker.sock"
    server = await asyncio.start_unix_server(swallow, path=str(path))
    try:
        yield f"unix://{path}"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_every_call_fails_at_its_deadline_on_a_wedged_engine(
    silent_engine: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_docker, "STOP_MARGIN_S", 0.3)
    task = objects.Task(id="t1", service_name="web", slot=1)
    task.spec.container.image = "app:1"
    async with DockerExecutor(node_id="n1", docker_host=silent_engine,
                              call_timeout=0.3) as executor:
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "ping": lambda: executor.ping(0.3),
            "info": executor.info,
            "list_containers": executor.list_containers,
            "inspect": lambda: executor.inspect("c1"),
            "create": lambda: executor.create(task),
            "start": lambda: executor.start("c1"),
            "stop": lambda: executor.stop("c1", 0),
            "remove": lambda: executor.remove("c1"),
        }
        for name, call in calls.items():
            started = time.monotonic()
            with pytest.raises(EngineTimeout, match="did not answer"):
                await call()
            assert time.monotonic() - started < 2, name
        # The event stream keeps trying (its connection attempts have deadlines too) and
        # ends when the executor closes.
        stream = executor.events()
        first = asyncio.ensure_future(anext(stream))
        await consistently_async(lambda: not first.done(), duration=0.5,
                                 what="the event stream waiting for an engine")
        await executor.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(first, 5)
