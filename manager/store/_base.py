"""Store interface and the in-memory state shared by store implementations."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

from podium.v1 import objects

Obj = (objects.Node | objects.Service | objects.Task | objects.Secret | objects.Identity
       | objects.Cluster)
# "secret" holds secrets and configs alike (SecretSpec.kind tells them apart). Its changes carry
# the data: watchers inside the manager only; WatchEvents never forwards them, nor changes to
# "identity" (users' and nodes' certificates in force) and "cluster" (the join token's secret).
Kind = Literal["node", "service", "task", "secret", "identity", "cluster"]
Action = Literal["create", "update", "delete"]
T = TypeVar("T")

_KINDS: dict[type, Kind] = {
    objects.Node: "node",
    objects.Service: "service",
    objects.Task: "task",
    objects.Secret: "secret",
    objects.Identity: "identity",
    objects.Cluster: "cluster",
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


class WatchOverflowError(StoreError):
    """A bounded watch fell more than its limit of changes behind and was closed: the changes
    it missed are gone, so its reader must read the state afresh and watch again."""


class ExistsError(StoreError):
    """An object with that id or name exists already."""


# Who the writes of the running task are made for: "user:NAME" (a Control call), "node:ID" (an
# agent's session) or "manager" (the manager's own loops). The store stamps it on every object
# it writes (meta.changed_by) and on every change, so events say who made each one.
_ACTOR: contextvars.ContextVar[str] = contextvars.ContextVar("actor", default="manager")


def current_actor() -> str:
    return _ACTOR.get()


def set_actor(actor: str) -> None:
    """Records the rest of the running task's writes as `actor`'s (a gRPC call: its own task)."""
    _ACTOR.set(actor)


@contextlib.contextmanager
def acting_as(actor: str) -> Iterator[None]:
    """Writes made inside are recorded as `actor`'s (tasks started inside inherit it)."""
    token = _ACTOR.set(actor)
    try:
        yield
    finally:
        _ACTOR.reset(token)


@dataclass(slots=True, frozen=True)
class Change:
    action: Action
    kind: Kind
    # The object as committed; for a delete, its last version.
    obj: Obj
    # Who made it (see acting_as).
    actor: str = "manager"


class ReadTx(Protocol):
    def get_node(self, id: str) -> objects.Node | None: ...
    def get_service(self, id: str) -> objects.Service | None: ...
    def get_task(self, id: str) -> objects.Task | None: ...
    def nodes(self) -> Iterable[objects.Node]: ...
    def services(self) -> Iterable[objects.Service]: ...
    def tasks(self) -> Iterable[objects.Task]: ...
    def tasks_of_service(self, service_id: str) -> list[objects.Task]: ...
    def tasks_of_node(self, node_id: str) -> list[objects.Task]: ...
    def pending_tasks(self) -> list[objects.Task]: ...
    @property
    def revision(self) -> int: ...
    def service_by_name(self, name: str) -> objects.Service | None: ...
    def node_by_name(self, name: str) -> objects.Node | None: ...
    def get_secret(self, id: str) -> objects.Secret | None: ...
    def secrets(self) -> Iterable[objects.Secret]: ...
    def get_identity(self, id: str) -> objects.Identity | None: ...
    def identities(self) -> Iterable[objects.Identity]: ...
    def get_cluster(self) -> objects.Cluster | None: ...


class WriteTx(ReadTx, Protocol):
    # Shared objects, not copies: for scanning; never change what they return.
    def peek_node(self, id: str) -> objects.Node | None: ...
    def peek_tasks_of_service(self, service_id: str) -> list[objects.Task]: ...
    def peek_tasks_of_node(self, node_id: str) -> list[objects.Task]: ...
    def create(self, obj: Obj) -> None: ...
    def update(self, obj: Obj) -> None: ...
    def delete(self, obj: Obj) -> None: ...
    @property
    def writes(self) -> int: ...


class Watch(Protocol):
    def __aiter__(self) -> AsyncIterator[Change]: ...
    async def get(self) -> Change: ...
    def get_nowait(self) -> Change | None: ...
    def close(self) -> None: ...


class Store(Protocol):
    def view(self) -> ReadTx: ...
    async def update(self, fn: Callable[[WriteTx], T]) -> T: ...
    def watch(self, *, limit: int = 0) -> Watch: ...
    def close(self) -> None: ...


class QueueWatch:
    """A watcher's queue of changes; close() detaches it from the store.

    Unbounded with `limit` 0: for the manager's own loops, which drain it promptly (and
    whose falling behind is only a delay). With a limit (a watcher outside the process, whose
    pace nobody controls): once `limit` changes wait unread, the queue is emptied, detached,
    and every later get() raises WatchOverflowError, so a reader that stalls holds at most
    `limit` changes in memory."""

    def __init__(self, detach: Callable[[QueueWatch], None], *, limit: int = 0) -> None:
        self._items: deque[Change] = deque()
        self._ready = asyncio.Event()
        self._detach = detach
        self._limit = limit
        self._overflowed = False

    def put(self, change: Change) -> None:
        if self._overflowed:
            return
        if self._limit and len(self._items) >= self._limit:
            self._overflowed = True
            self._items.clear()  # what it held is freed now, not when the reader comes back
            self._detach(self)
        else:
            self._items.append(change)
        self._ready.set()

    def _overflow(self) -> WatchOverflowError:
        return WatchOverflowError(
            f"the watch fell more than {self._limit} changes behind and was closed"
        )

    async def get(self) -> Change:
        while not self._items:
            if self._overflowed:
                raise self._overflow()
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def get_nowait(self) -> Change | None:
        if self._items:
            return self._items.popleft()
        if self._overflowed:
            raise self._overflow()
        return None

    async def __aiter__(self) -> AsyncIterator[Change]:
        while True:
            yield await self.get()

    def close(self) -> None:
        self._detach(self)


class Watchers:
    """A store's watchers: each gets every change published from when it subscribed."""

    def __init__(self) -> None:
        self._watches: list[QueueWatch] = []

    def watch(self, *, limit: int = 0) -> QueueWatch:
        """Every change from now on; see QueueWatch for `limit` (0: unbounded)."""
        watch = QueueWatch(self._detach, limit=limit)
        self._watches.append(watch)
        return watch

    def _detach(self, watch: QueueWatch) -> None:
        if watch in self._watches:
            self._watches.remove(watch)

    def publish(self, change: Change) -> None:
        for watch in tuple(self._watches):  # a bounded watch that overflows detaches
            watch.put(change)
