"""SqliteStore: the whole state in memory, written through to SQLite.

Every committed transaction is one SQLite transaction in WAL mode with
synchronous=NORMAL: a commit survives the manager being killed (kill -9) at
any point; only a power loss can take the last commits back. Reads never
touch the database: it is read once, at open.
"""

from __future__ import annotations

import pathlib
import sqlite3
from collections.abc import Callable
from typing import TypeVar

from podium.manager import ids
from podium.manager.store import _codec
from podium.manager.store._base import CLASSES, QueueWatch, ReadTx, WriteTx
from podium.manager.store._tables import ReadView, Tables, Transaction

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;
"""


class SqliteStore:
    def __init__(self, path: pathlib.Path | str) -> None:
        self._path = pathlib.Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._tables = Tables()
        self._watches: list[QueueWatch] = []
        self._closed = False
        for kind, _id, blob in self._db.execute("SELECT kind, id, data FROM objects"):
            cls = CLASSES.get(kind)
            if cls is not None:
                self._tables.put(_codec.decode(cls, blob))

    def view(self) -> ReadTx:
        return ReadView(self._tables)

    async def update(self, fn: Callable[[WriteTx], T]) -> T:
        return self.update_now(fn)

    def update_now(self, fn: Callable[[WriteTx], T]) -> T:
        """Synchronous form of update(), for callers outside a coroutine."""
        if self._closed:
            raise RuntimeError("store is closed")
        tx = Transaction(self._tables, ids.timestamp())
        result = fn(tx)
        if tx.staged:
            self._commit(tx)
        return result

    def _commit(self, tx: Transaction) -> None:
        writes: list[tuple[str, str, int, bytes]] = []
        deletes: list[tuple[str, str]] = []
        for (kind, id), obj in tx.staged.items():
            if obj is None:
                deletes.append((kind, id))
            else:
                writes.append((kind, id, obj.meta.version, _codec.encode(obj)))
        db = self._db
        db.execute("BEGIN")
        try:
            if writes:
                db.executemany(
                    "INSERT OR REPLACE INTO objects (kind, id, version, data) VALUES (?,?,?,?)",
                    writes,
                )
            if deletes:
                db.executemany("DELETE FROM objects WHERE kind = ? AND id = ?", deletes)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        for (kind, id), obj in tx.staged.items():
            if obj is None:
                self._tables.remove(kind, id)
            else:
                self._tables.put(obj)
        for change in tx.changes:
            for watch in tuple(self._watches):  # a bounded watch that overflows detaches
                watch.put(change)

    def watch(self, *, limit: int = 0) -> QueueWatch:
        """Every change from now on; see QueueWatch for `limit` (0: unbounded)."""
        watch = QueueWatch(self._detach, limit=limit)
        self._watches.append(watch)
        return watch

    def _detach(self, watch: QueueWatch) -> None:
        if watch in self._watches:
            self._watches.remove(watch)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._db.close()

