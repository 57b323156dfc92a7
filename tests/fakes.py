"""A fake executor: the Executor protocol in memory, for logic tests and for simulating many
agents in benchmarks. Never evidence that containers run: end-to-end tests use the engine.

Faults on demand: wedge() makes every call hang until unwedge() (each call still fails with
EngineTimeout after `call_timeout`, as the Docker executor's do), `hang_create` holds the
create() of the task ids it lists the same way, and `fail` maps a call name ("inspect",
"create", ...) to an exception that call raises.

RawAgent: an agent's session to the dispatcher spoken by hand over real gRPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import grpc

from podium.agent.executor import (
    ACTION_DIE,
    ACTION_RESYNC,
    ACTION_START,
    ContainerEvent,
    ContainerState,
    EngineInfo,
    EngineTimeout,
    ExecutorError,
)
from podium.v1 import dispatcher, dispatcher_grpc, objects


class FakeExecutor:
    def __init__(self, *, nano_cpus: int = 4 * 10**9, memory_bytes: int = 8 << 30,
                 call_timeout: float = 20.0) -> None:
        self._info = EngineInfo("fake", nano_cpus, memory_bytes)
        self._containers: dict[str, ContainerState] = {}
        self._events: asyncio.Queue[ContainerEvent | None] = asyncio.Queue()
        self._next = 0
        self.call_timeout = call_timeout
        self._answering = asyncio.Event()
        self._answering.set()
        self.hang_create: set[str] = set()
        self.fail: dict[str, BaseException] = {}
        self.calls: dict[str, int] = {}

    def wedge(self) -> None:
        """Every call from now on hangs (until unwedge() or its deadline)."""
        self._answering.clear()

    def unwedge(self) -> None:
        self._answering.set()

    async def _call(self, name: str, *, hang: bool = False, within: float | None = None) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        deadline = self.call_timeout if within is None else within
        try:
            async with asyncio.timeout(deadline):
                await self._answering.wait()
                if hang:
                    await asyncio.Event().wait()
        except TimeoutError as err:
            raise EngineTimeout(f"fake engine did not answer ({name}) within {deadline:g}s") \
                from err
        if name in self.fail:
            raise self.fail[name]

    async def info(self) -> EngineInfo:
        await self._call("info")
        return self._info

    async def ping(self, deadline: float) -> None:
        await self._call("ping", within=deadline)

    async def list_containers(self) -> list[ContainerState]:
        await self._call("list_containers")
        return list(self._containers.values())

    async def inspect(self, container_id: str) -> ContainerState | None:
        await self._call("inspect")
        return self._containers.get(container_id)

    async def create(self, task: objects.Task) -> str:
        await self._call("create", hang=task.id in self.hang_create)
        for state in self._containers.values():
            if state.task_id == task.id:
                return state.container_id
        if task.spec.container.image.startswith("missing/"):
            raise ExecutorError(f"No such image: {task.spec.container.image}")
        self._next += 1
        cid = f"fake{self._next:08d}"
        self._containers[cid] = ContainerState(cid, task.id, cid, False, None, "", False,
                                               None, None, ())
        return cid

    async def start(self, container_id: str) -> None:
        await self._call("start")
        state = self._containers[container_id]
        self._containers[container_id] = replace(state, running=True, exit_code=None,
                                                 started_at=time.time(), finished_at=None)
        self._emit(state, ACTION_START, None)

    async def stop(self, container_id: str, grace: float) -> None:
        await self._call("stop", within=grace + 10)
        state = self._containers.get(container_id)
        if state is not None and state.running:
            self._containers[container_id] = replace(state, running=False, exit_code=0,
                                                     finished_at=time.time())
            self._emit(state, ACTION_DIE, 0)

    async def remove(self, container_id: str) -> None:
        await self._call("remove")
        self._containers.pop(container_id, None)

    def crash(self, container_id: str, exit_code: int = 1) -> None:
        state = self._containers[container_id]
        self._containers[container_id] = replace(state, running=False, exit_code=exit_code,
                                                 finished_at=time.time())
        self._emit(state, ACTION_DIE, exit_code)

    def _emit(self, state: ContainerState, action: str, exit_code: int | None) -> None:
        self._events.put_nowait(ContainerEvent(state.task_id, state.container_id, action,
                                               exit_code, time.time_ns()))

    async def events(self) -> AsyncIterator[ContainerEvent]:
        yield ContainerEvent("", "", ACTION_RESYNC, None, time.time_ns())
        while (event := await self._events.get()) is not None:
            yield event

    async def close(self) -> None:
        self._events.put_nowait(None)


class RawAgent:
    """An agent's session to the dispatcher spoken by hand over real gRPC, for tests that need
    to send what a real agent would not (stale statuses) or read at their own pace.

    `async with RawAgent(address, name, node_id) as raw:` registers, heartbeats every
    `heartbeat` seconds and collects what the manager sends in `received` (unless `read` is
    False: then nothing is read from the stream, as with an agent that is stuck)."""

    def __init__(self, address: str, name: str, node_id: str, *, heartbeat: float = 0.5,
                 read: bool = True, nano_cpus: int = 64 * 10**9,
                 memory_bytes: int = 256 << 30) -> None:
        self.address, self.name, self.node_id = address, name, node_id
        self.received: list[dispatcher.ManagerMessage] = []
        self.error: grpc.aio.AioRpcError | None = None
        self._heartbeat, self._read = heartbeat, read
        self._capacity = objects.Resources(nano_cpus=nano_cpus, memory_bytes=memory_bytes)
        self._outbox: asyncio.Queue[dispatcher.AgentMessage | None] = asyncio.Queue()
        self._jobs: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> RawAgent:
        # Its own connection, as an agent process has: channels to one address share one by
        # default, and a stream that is not read would hold up the others' flow control.
        self._channel = grpc.aio.insecure_channel(
            self.address, options=[("grpc.use_local_subchannel_pool", 1)])
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
