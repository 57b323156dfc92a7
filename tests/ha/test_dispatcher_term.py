"""A session whose registration is still being written when its term ends (close_all(), the
leader stepping down) is refused, not left open on the dead term's dispatcher: such a session
kept its agent "connected" to a term whose loops had stopped, while the next term's node
monitor marked the node down for good (found by the fault lab, an etcd member killed)."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from podium.manager.dispatcher import Dispatcher
from podium.manager.loadbook import LoadBook
from podium.manager.store import open_store
from podium.v1 import dispatcher, objects


class Refused(Exception):
    pass


class Context:
    """The servicer context a Session call needs: abort() raises, as grpc.aio's does."""

    def __init__(self) -> None:
        self.written: list[Any] = []
        self.code: grpc.StatusCode | None = None

    def peer(self) -> str:
        return "ipv4:127.0.0.2:40000"

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code = code
        raise Refused(details)

    async def write(self, message: Any) -> None:
        self.written.append(message)


class SlowStore:
    """A store whose writes wait for `release` (a write to etcd failing over to a member)."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.writing = asyncio.Event()
        self.release = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def update(self, fn: Any) -> Any:
        self.writing.set()
        await self.release.wait()
        return await self._store.update(fn)


async def test_a_session_registered_after_its_term_ended_is_refused(
        tmp_path: pathlib.Path) -> None:
    store = await open_store("sqlite", data_dir=tmp_path, sealer=None)
    try:
        slow = SlowStore(store)
        term = Dispatcher(store=slow, load=LoadBook())  # type: ignore[arg-type]
        stop = asyncio.Event()

        async def messages() -> AsyncIterator[dispatcher.AgentMessage]:
            yield dispatcher.AgentMessage(register=dispatcher.Register(
                node_id="node-a", description=objects.NodeDescription(name="a")))
            await stop.wait()  # the agent keeps its stream open, as a connected one does

        context = Context()
        call = asyncio.create_task(term.Session(messages(), context))  # type: ignore[arg-type]
        await asyncio.wait_for(slow.writing.wait(), 5)
        term.close_all()  # the leader steps down meanwhile
        slow.release.set()
        with pytest.raises(Refused, match="stopped leading"):
            await asyncio.wait_for(call, 5)
        assert context.code == grpc.StatusCode.UNAVAILABLE
        assert term.sessions_open == 0
        stop.set()
    finally:
        store.close()
