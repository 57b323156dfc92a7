"""A fake executor: the Executor protocol in memory, for logic tests and for simulating many
agents in benchmarks. Never evidence that containers run: end-to-end tests use the engine.

Faults on demand: wedge() makes every call hang until unwedge() (each call still fails with
EngineTimeout after `call_timeout`, as the Docker executor's do), `hang_create` holds the
create() of the task ids it lists the same way, and `fail` maps a call name ("inspect",
"create", ...) to an exception that call raises.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace

from podium.agent.executor import (
    ACTION_DIE,
    ACTION_RESYNC,
    ACTION_START,
    ContainerEvent,
    ContainerState,
    EngineInfo,
    EngineTimeout,
    ExecutorError,
    LogEntry,
)
from podium.v1 import objects


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
        # Each container's output (write() adds to it) and who follows it.
        self._output: dict[str, list[LogEntry]] = {}
        self._written = asyncio.Event()

    def wedge(self) -> None:
        """Every call from now on hangs (until unwedge() or its deadline)."""
        self._answering.clear()

    def unwedge(self) -> None:
        self._answering.set()

    async def _call(self, name: str, *, hang: bool = False, within: float | None = None) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        if self._answering.is_set() and not hang:
            # Answered at once: no deadline to arm (thousands of simulated agents in one process
            # would spend a fifth of their time on the timers of calls that never wait).
            if name in self.fail:
                raise self.fail[name]
            return
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

    def write(self, container_id: str, text: str, *, stderr: bool = False) -> None:
        """The container prints a line."""
        entry = LogEntry(time.time_ns(), stderr, text.encode())
        self._output.setdefault(container_id, []).append(entry)
        self._wake_followers()

    def _wake_followers(self) -> None:
        self._written.set()
        self._written = asyncio.Event()

    async def logs(self, container_id: str, *, follow: bool, since_ns: int = 0,
                   tail: int = 0) -> AsyncIterator[LogEntry]:
        await self._call("logs")
        if container_id not in self._containers:
            raise ExecutorError(f"No such container: {container_id}")
        lines = [e for e in self._output.get(container_id, []) if e.time_ns >= since_ns]
        sent = len(self._output.get(container_id, []))
        for entry in lines[-tail:] if tail > 0 else lines:
            yield entry
        while follow:
            state = self._containers.get(container_id)
            if state is None or not state.running:
                return
            written = self._written
            await written.wait()
            output = self._output.get(container_id, [])
            for entry in output[sent:]:
                yield entry
            sent = len(output)

    def crash(self, container_id: str, exit_code: int = 1) -> None:
        state = self._containers[container_id]
        self._containers[container_id] = replace(state, running=False, exit_code=exit_code,
                                                 finished_at=time.time())
        self._emit(state, ACTION_DIE, exit_code)

    def _emit(self, state: ContainerState, action: str, exit_code: int | None) -> None:
        self._wake_followers()  # a follower of a container that stopped ends
        self._events.put_nowait(ContainerEvent(state.task_id, state.container_id, action,
                                               exit_code, time.time_ns()))

    async def events(self) -> AsyncIterator[ContainerEvent]:
        yield ContainerEvent("", "", ACTION_RESYNC, None, time.time_ns())
        while (event := await self._events.get()) is not None:
            yield event

    async def close(self) -> None:
        self._events.put_nowait(None)
