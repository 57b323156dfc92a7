"""SqliteStore: the whole state in memory, written through to SQLite.

Every committed transaction is one SQLite transaction in WAL mode with
synchronous=NORMAL: a commit survives the manager being killed (kill -9) at
any point; only a power loss can take the last commits back. Reads never
touch the database: it is read once, at open.

With a sealer (a KeyRing), secret rows are stored with their content sealed (_sealing.py): the
content is in the clear in memory only (the tables, the watch, what the manager reads).
Opening seals the rows an older manager wrote in plaintext, in one transaction, and refuses
(SealingError, naming the key id and the key ring's file) when a row's key is not in the ring:
the store never opens with secrets it cannot read, so it never overwrites them either.
"""

from __future__ import annotations

import logging
import pathlib
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

from podium.manager import ids
from podium.manager.store import _codec, _sealing
from podium.manager.store._base import (
    CLASSES,
    ExistsError,
    Obj,
    QueueWatch,
    ReadTx,
    Watchers,
    WriteTx,
    kind_of,
)
from podium.manager.store._sealing import KeyRing, SealingError
from podium.manager.store._tables import ReadView, Tables, Transaction
from podium.v1 import objects

T = TypeVar("T")
log = logging.getLogger(__name__)

# Rows lie in the order they were first written (the rowid), found by (kind, id) through an
# index, and an update rewrites a row where it is. So the objects written together share pages:
# the status reports of 2,000 tasks created together rewrite 86 pages, where rows ordered by
# their random ids put them on 814 pages of 899; the two commits of a burst of 10,000 tasks in
# a store of 150,000 (creation, placement) take 0.14 s of SQLite, where they took 0.36 s.
def _schema(table: str) -> tuple[str, str]:
    """The statements that make the objects table (and its index, which follows the table when
    `table` is renamed to `objects`)."""
    return (f"CREATE TABLE IF NOT EXISTS {table} (kind TEXT NOT NULL, id TEXT NOT NULL, "
            "version INTEGER NOT NULL, data BLOB NOT NULL)",
            f"CREATE UNIQUE INDEX IF NOT EXISTS objects_key ON {table} (kind, id)")


_UPSERT = ("INSERT INTO objects (kind, id, version, data) VALUES (?,?,?,?) "
           "ON CONFLICT (kind, id) DO UPDATE SET version = excluded.version, data = excluded.data")


class SqliteStore:
    def __init__(self, path: pathlib.Path | str, *, sealer: KeyRing | None = None) -> None:
        self._path = pathlib.Path(path)
        self._sealer = sealer
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        if sealer is not None:
            # Content a write replaces is zeroed, not left in free space where it could be read:
            # a plaintext row just sealed, or a value sealed under a key since rotated away.
            self._db.execute("PRAGMA secure_delete=ON")
        self._relayout()
        for statement in _schema("objects"):
            self._db.execute(statement)
        self._tables = Tables()
        self._watchers = Watchers()
        self._closed = False
        # Called with each commit's duration in seconds (the manager's metrics), if set.
        self.on_commit: Callable[[float], None] | None = None
        try:
            self._load()
        except BaseException:
            self._db.close()
            raise

    def _relayout(self) -> None:
        """A store written by an older manager keeps its rows ordered by (kind, id) (a table
        WITHOUT ROWID): copied into the current layout, in one transaction (a crash leaves the
        old table whole), once."""
        row = self._db.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'objects'").fetchone()
        if row is None or "WITHOUT ROWID" not in row[0].upper():
            return
        db = self._db
        db.execute("BEGIN")
        try:
            for statement in _schema("objects_next"):
                db.execute(statement)
            db.execute("INSERT INTO objects_next (kind, id, version, data) "
                       "SELECT kind, id, version, data FROM objects")
            db.execute("DROP TABLE objects")
            db.execute("ALTER TABLE objects_next RENAME TO objects")  # its index follows it
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._purge_log()  # the old table's pages, secrets among them, leave the log
        log.info("store %s: rows laid out in the order they are written", self._path)

    def _load(self) -> None:
        plaintext: list[objects.Secret] = []
        for kind, _id, blob in self._db.execute("SELECT kind, id, data FROM objects"):
            if kind == "secret":
                secret, key_id = _sealing.decode_row(blob, self._sealer)
                if key_id is None:
                    plaintext.append(secret)
                self._tables.put(secret)
                continue
            cls = CLASSES.get(kind)
            if cls is not None:
                self._tables.put(_codec.decode(cls, blob))
        if self._sealer is not None and plaintext:
            self._write_rows([(s.id, s.meta.version, self._encode(s)) for s in plaintext])
            self._purge_log()
            log.info("sealed %d secret(s) and config(s) stored in plaintext", len(plaintext))

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
            started = time.perf_counter()
            self._commit(tx)
            if self.on_commit is not None:
                self.on_commit(time.perf_counter() - started)
        return result

    def _commit(self, tx: Transaction) -> None:
        writes: list[tuple[str, str, int, bytes]] = []
        deletes: list[tuple[str, str]] = []
        for (kind, id), obj in tx.staged.items():
            if obj is None:
                deletes.append((kind, id))
            else:
                writes.append((kind, id, obj.meta.version, self._encode(obj)))
        db = self._db
        db.execute("BEGIN")
        try:
            if writes:
                db.executemany(_UPSERT, writes)
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
            self._watchers.publish(change)

    def every_object(self) -> list[Obj]:
        """Every object in the tables (shared: do not mutate)."""
        return [obj for table in self._tables.objects.values() for obj in table.values()]

    def load_objects(self, objs: list[Obj]) -> None:
        """Writes `objs` as they are (versions, times and authors kept) into this store, which
        must be empty (moving a cluster from another store: `podium manager migrate`)."""
        if any(self._tables.objects.values()):
            raise ExistsError(f"{self._path} holds objects already")
        rows = [(kind_of(o), o.id, o.meta.version, self._encode(o)) for o in objs]
        db = self._db
        db.execute("BEGIN")
        try:
            db.executemany(
                "INSERT INTO objects (kind, id, version, data) VALUES (?,?,?,?)", rows)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        for obj in objs:
            self._tables.put(obj)

    def _encode(self, obj: Obj) -> bytes:
        if self._sealer is not None and isinstance(obj, objects.Secret):
            return _sealing.encode_sealed(obj, self._sealer)
        return _codec.encode(obj)

    def _write_rows(self, rows: list[tuple[str, int, bytes]]) -> None:
        """Rewrites secret rows (id, version, data) in one transaction; memory is unchanged."""
        db = self._db
        db.execute("BEGIN")
        try:
            db.executemany(_UPSERT, [("secret", *row) for row in rows])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _purge_log(self) -> None:
        """Copies the WAL into the database and empties it: the log's copies of the rows just
        rewritten (plaintext, or sealed under an old key) are gone from the disk."""
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def rotate_key(self) -> tuple[str, int]:
        """Seals every secret and config under a new key: (the key's id, how many rows).

        In the order that leaves a readable store after a crash at any point: the ring with
        the new key as current and the old ones still in it is written first; then every
        secret row is re-sealed in one SQLite transaction; then the old keys are dropped."""
        if self._closed:
            raise RuntimeError("store is closed")
        ring = self._sealer
        if ring is None:
            raise SealingError("this store keeps secrets in plaintext (opened without a key ring)")
        key_id = ring.add_key()
        secrets = list(self.view().secrets())
        self._write_rows([(s.id, s.meta.version, self._encode(s)) for s in secrets])
        self._purge_log()
        dropped = ring.keep_only_current()
        log.info("secrets key rotated to %s: %d secret(s) and config(s) re-sealed, key(s) %s "
                 "dropped", key_id, len(secrets), ", ".join(dropped) or "none")
        return key_id, len(secrets)

    def watch(self, *, limit: int = 0) -> QueueWatch:
        """Every change from now on; see QueueWatch for `limit` (0: unbounded)."""
        return self._watchers.watch(limit=limit)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._db.close()

