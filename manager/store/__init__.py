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

`SqliteStore` keeps everything in memory and writes through to SQLite (one manager);
`EtcdStore` keeps everything in memory too, fed by etcd's watch, and writes etcd transactions
(several managers sharing one state). Given a `KeyRing`, both keep secrets' content encrypted
at rest (_sealing.py, README "Secrets at rest").
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
from podium.manager.store._etcd import EtcdStore
from podium.manager.store._etcdconn import EtcdTarget, TlsMaterial, parse_url
from podium.manager.store._open import (
    SQLITE,
    AnyStore,
    EtcdTlsFiles,
    check_url,
    close_store,
    open_store,
)
from podium.manager.store._sealing import KeyRing, SealingError
from podium.manager.store._sqlite import SqliteStore

__all__ = [
    "SQLITE",
    "AnyStore",
    "Change",
    "ConflictError",
    "EtcdStore",
    "EtcdTarget",
    "EtcdTlsFiles",
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
    "TlsMaterial",
    "Watch",
    "WatchOverflowError",
    "WriteTx",
    "acting_as",
    "check_url",
    "close_store",
    "current_actor",
    "kind_of",
    "open_store",
    "parse_url",
    "set_actor",
]
