"""The manager's state: nodes, services, tasks and secrets (and configs), with
transactions and a watch.

Contract:
- `Store.view()` returns a consistent read view. Objects it returns are shared
  with the store and must not be mutated.
- `await Store.update(fn)` runs `fn(tx)` atomically: every write in it commits
  durably together, or none does when `fn` raises. Objects returned by
  `tx.get` are private copies that may be changed and passed to `tx.update`.
  `tx.update` and `tx.delete` check the object's meta.version against the
  stored one and raise `ConflictError` when it moved on.
- `Store.watch()` yields every committed change, in commit order, to each
  watcher from the moment it subscribed. `watch(limit=N)` bounds what waits
  unread: a watcher that falls N changes behind is closed and its reads raise
  `WatchOverflowError` (for watchers outside the process, e.g. `podium events`).

`SqliteStore` keeps everything in memory and writes through to SQLite; a
distributed backend (etcd) can implement the same `Store` protocol. Given a `KeyRing`, it
keeps secrets' content encrypted on disk (_sealing.py, README "Secrets at rest").
"""

from __future__ import annotations

from podium.manager.store._base import (
    Change,
    ConflictError,
    ExistsError,
    Kind,
    NotFoundError,
    Obj,
    ReadTx,
    Store,
    StoreError,
    Watch,
    WatchOverflowError,
    WriteTx,
    acting_as,
    current_actor,
    kind_of,
    set_actor,
)
from podium.manager.store._sealing import KeyRing, SealingError
from podium.manager.store._sqlite import SqliteStore

__all__ = [
    "Change",
    "ConflictError",
    "ExistsError",
    "KeyRing",
    "Kind",
    "NotFoundError",
    "Obj",
    "ReadTx",
    "SealingError",
    "SqliteStore",
    "Store",
    "StoreError",
    "Watch",
    "WatchOverflowError",
    "WriteTx",
    "acting_as",
    "current_actor",
    "kind_of",
    "set_actor",
]
