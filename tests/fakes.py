"""Test doubles: the fake executor (podium.lab.fakeexec, re-exported here) and RawAgent, an
agent's session to the dispatcher spoken by hand over real gRPC."""

from __future__ import annotations

__all__ = ["FakeExecutor", "RawAgent"]

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc

from podium.agent.session import CHANNEL_OPTIONS
from podium.lab.fakeexec import FakeExecutor
from podium.rules.credentials import CHANNEL_OPTIONS as TLS_OPTIONS
from podium.v1 import dispatcher, dispatcher_grpc, objects


class RawAgent:
    """An agent's session to the dispatcher spoken by hand over real gRPC, for tests that need
    to send what a real agent would not (stale statuses) or read at their own pace.

    `async with RawAgent(address, name, node_id) as raw:` registers, heartbeats every
    `heartbeat` seconds and collects what the manager sends in `received` (unless `read` is
    False: then nothing is read from the stream, as with an agent that is stuck)."""

    def __init__(self, address: str, name: str, node_id: str, *, heartbeat: float = 0.5,
                 read: bool = True, nano_cpus: int = 64 * 10**9,
                 memory_bytes: int = 256 << 30, credentials: Any = None) -> None:
        """`credentials`: grpc.ChannelCredentials of a node certificate (a manager with TLS;
        podium.lab.local's `node_credentials` gets one); None: plaintext."""
        self.address, self.name, self.node_id = address, name, node_id
        self._credentials = credentials
        self.received: list[dispatcher.ManagerMessage] = []
        self.error: grpc.aio.AioRpcError | None = None
        self._heartbeat, self._read = heartbeat, read
        self._capacity = objects.Resources(nano_cpus=nano_cpus, memory_bytes=memory_bytes)
        self._outbox: asyncio.Queue[dispatcher.AgentMessage | None] = asyncio.Queue()
        self._jobs: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> RawAgent:
        # Its own connection, as an agent process has: channels to one address share one by
        # default, and a stream that is not read would hold up the others' flow control.
        options = [*CHANNEL_OPTIONS, ("grpc.use_local_subchannel_pool", 1)]
        self._channel = grpc.aio.insecure_channel(self.address, options=options) \
            if self._credentials is None else grpc.aio.secure_channel(
                self.address, self._credentials, options=[*options, *TLS_OPTIONS])
        description = objects.NodeDescription(name=self.name, capacity=self._capacity)
        self.send(dispatcher.AgentMessage(
            register=dispatcher.Register(node_id=self.node_id, description=description)))

        async def requests() -> AsyncIterator[dispatcher.AgentMessage]:
            while (message := await self._outbox.get()) is not None:
                yield message

        self.call = dispatcher_grpc.DispatcherStub(self._channel).Session(requests())
        self._jobs.append(asyncio.create_task(self._beat()))
        if self._read:
            self._jobs.append(asyncio.create_task(self.read_all()))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.call.cancel()
        self._outbox.put_nowait(None)  # ends gRPC's request consumer even after an abort
        for job in self._jobs:
            job.cancel()
        for job in self._jobs:
            with contextlib.suppress(asyncio.CancelledError):
                await job
        await self._channel.close()

    def send(self, message: dispatcher.AgentMessage) -> None:
        self._outbox.put_nowait(message)

    def report(self, *updates: tuple[str, objects.TaskStatus]) -> None:
        report = dispatcher.StatusReport()
        for task_id, status in updates:
            report.updates.add(task_id=task_id, status=status)
        self.send(dispatcher.AgentMessage(status=report))

    async def read_all(self) -> None:
        """Collects messages until the stream ends; its error, if any, lands in `error`."""
        try:
            async for message in self.call:
                self.received.append(message)
        except grpc.aio.AioRpcError as err:
            self.error = err

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat)
            self.send(dispatcher.AgentMessage(heartbeat=dispatcher.Heartbeat()))
