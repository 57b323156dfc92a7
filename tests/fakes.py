"""A fake executor: the Executor protocol in memory, for logic tests and for simulating many
agents in benchmarks. Never evidence that containers run: end-to-end tests use the engine."""

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
    ExecutorError,
)
from podium.v1 import objects


class FakeExecutor:
    def __init__(self, *, nano_cpus: int = 4 * 10**9, memory_bytes: int = 8 << 30) -> None:
        self._info = EngineInfo("fake", nano_cpus, memory_bytes)
        self._containers: dict[str, ContainerState] = {}
        self._events: asyncio.Queue[ContainerEvent | None] = asyncio.Queue()
        self._next = 0

    async def info(self) -> EngineInfo:
        return self._info

    async def list_containers(self) -> list[ContainerState]:
        return list(self._containers.values())

    async def inspect(self, container_id: str) -> ContainerState | None:
        return self._containers.get(container_id)

    async def create(self, task: objects.Task) -> str:
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
        state = self._containers[container_id]
        self._containers[container_id] = replace(state, running=True, exit_code=None,
                                                 started_at=time.time(), finished_at=None)
        self._emit(state, ACTION_START, None)

    async def stop(self, container_id: str, grace: float) -> None:
        state = self._containers.get(container_id)
        if state is not None and state.running:
            self._containers[container_id] = replace(state, running=False, exit_code=0,
                                                     finished_at=time.time())
            self._emit(state, ACTION_DIE, 0)

    async def remove(self, container_id: str) -> None:
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
