"""Store interface and the in-memory state shared by store implementations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

from podium.v1 import objects

Obj = objects.Node | objects.Service | objects.Task
Kind = Literal["node", "service", "task"]
Action = Literal["create", "update", "delete"]
T = TypeVar("T")

_KINDS: dict[type, Kind] = {
    objects.Node: "node",
    objects.Service: "service",
    objects.Task: "task",
}
CLASSES: dict[Kind, type[Obj]] = {v: k for k, v in _KINDS.items()}


def kind_of(obj: Obj) -> Kind:
    return _KINDS[type(obj)]


class StoreError(Exception):
    """Base of the store's errors."""


class ConflictError(StoreError):
    """The object changed since it was read: read it again and retry."""


class NotFoundError(StoreError):
    """No object with that id."""


class ExistsError(StoreError):
    """An object with that id or name exists already."""


@dataclass(slots=True, frozen=True)
class Change:
    action: Action
    kind: Kind
    # The object as committed; for a delete, its last version.
    obj: Obj


class ReadTx(Protocol):
    def get_node(self, id: str) -> objects.Node | None: ...
    def get_service(self, id: str) -> objects.Service | None: ...
    def get_task(self, id: str) -> objects.Task | None: ...
    def nodes(self) -> Iterable[objects.Node]: ...
    def services(self) -> Iterable[objects.Service]: ...
    def tasks(self) -> Iterable[objects.Task]: ...
    def tasks_of_service(self, service_id: str) -> list[objects.Task]: ...
    def tasks_of_node(self, node_id: str) -> list[objects.Task]: ...
    def service_by_name(self, name: str) -> objects.Service | None: ...
    def node_by_name(self, name: str) -> objects.Node | None: ...


class WriteTx(ReadTx, Protocol):
    def create(self, obj: Obj) -> None: ...
    def update(self, obj: Obj) -> None: ...
    def delete(self, obj: Obj) -> None: ...


class Watch(Protocol):
    def __aiter__(self) -> AsyncIterator[Change]: ...
    async def get(self) -> Change: ...
    def get_nowait(self) -> Change | None: ...
    def close(self) -> None: ...


class Store(Protocol):
    def view(self) -> ReadTx: ...
    async def update(self, fn: Callable[[WriteTx], T]) -> T: ...
    def watch(self) -> Watch: ...
    def close(self) -> None: ...


class QueueWatch:
    """A watcher's queue of changes. Unbounded: watchers are in-process loops
    that drain it promptly; close() detaches it from the store."""

    def __init__(self, detach: Callable[[QueueWatch], None]) -> None:
        self._queue: asyncio.Queue[Change] = asyncio.Queue()
        self._detach = detach

    def put(self, change: Change) -> None:
        self._queue.put_nowait(change)

    async def get(self) -> Change:
        return await self._queue.get()

    def get_nowait(self) -> Change | None:
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None

    async def __aiter__(self) -> AsyncIterator[Change]:
        while True:
            yield await self._queue.get()

    def close(self) -> None:
        self._detach(self)
