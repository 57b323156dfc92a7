"""EtcdStore: the Store protocol on etcd, for several managers sharing one state.

Each object is one key, PREFIX/KIND/ID (PREFIX: /podium/v1 unless the URL names another),
holding the object as SqliteStore stores its row (_codec; secrets sealed, _sealing). Every
manager keeps the whole state in memory, as SqliteStore does:

- open() reads the prefix once, at one revision R (in pages), then watches it from R+1; the
  watch alone changes the tables and feeds the store's watchers, so every manager's watchers
  see every manager's writes once, in etcd's revision order. Each key's mod_revision is kept.
- update(fn) runs fn on a Transaction over the tables, then sends its writes as ONE etcd
  transaction that compares each key's mod_revision with the one the tables hold (a key
  thought absent: create_revision 0). When another manager wrote first, ConflictError, raised
  once the tables caught up with etcd, so a retry reads what won. Otherwise it returns once
  the watch applied its revision: the caller reads its own writes. A process's updates run one
  at a time (as SqliteStore's do), so its own loops never conflict with each other.
- Who made a change (Change.actor) travels in the objects (meta.changed_by); a transaction
  that deletes writes PREFIX/_txn/actor in the same revision, which is where a delete's actor
  comes from. A delete's last version comes from the tables (they hold every key as of the
  revision before), so the watch does not ask etcd for previous values.
- A member that fails is left for the next (_etcdconn); with none answering, update() raises
  StoreError within its deadline and reads go on from memory. A watch whose revision was
  compacted away reloads the prefix and publishes the differences as changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from aetcd import rpc

from podium.manager import ids
from podium.manager.store import _codec, _sealing
from podium.manager.store._base import (
    CLASSES,
    Action,
    Change,
    ConflictError,
    Kind,
    Obj,
    QueueWatch,
    ReadTx,
    StoreError,
    Watchers,
    WriteTx,
    current_actor,
    kind_of,
)
from podium.manager.store._etcdconn import EtcdConnection, EtcdTarget, Stubs, TlsMaterial
from podium.manager.store._sealing import KeyRing, SealingError
from podium.manager.store._tables import ReadView, Tables, Transaction
from podium.v1 import objects

T = TypeVar("T")
log = logging.getLogger(__name__)

PAGE = 2000  # keys per range read at open
PROBE_PERIOD_S = 1.0  # how often an idle store checks that etcd (a quorum of it) answers
_ACTOR_KEY = "_txn/actor"
_WATCH_METADATA = (("hasleader", "true"),)  # a member cut off from the quorum ends the watch


@dataclass(slots=True)
class _Record:
    kind: Kind
    obj: Obj
    revision: int


class EtcdStore:
    """Open with `await EtcdStore.open(target, sealer=..., tls=...)`; `await aclose()`."""

    def __init__(self, target: EtcdTarget, conn: EtcdConnection, *,
                 sealer: KeyRing | None) -> None:
        self.target = target
        self._conn = conn
        self._sealer = sealer
        self._prefix = target.prefix.encode() + b"/"
        self._range_end = prefix_end(self._prefix)
        self._actor_key = self._prefix + _ACTOR_KEY.encode()
        self._tables = Tables()
        self._revs: dict[tuple[Kind, str], int] = {}
        self._watchers = Watchers()
        self._lock = asyncio.Lock()
        self._applied = 0  # every event up to this revision is in the tables
        self._advanced = asyncio.Event()
        self._actor: tuple[int, str] = (0, "manager")
        self._moved = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        # Called with each commit's duration in seconds (the manager's metrics), if set.
        self.on_commit: Callable[[float], None] | None = None
        conn.on_move = lambda _: self._moved.set()

    @classmethod
    async def open(cls, target: EtcdTarget, *, sealer: KeyRing | None = None,
                   tls: TlsMaterial | None = None, call_timeout: float | None = None,
                   deadline: float | None = None) -> EtcdStore:
        """Reads the state and starts watching; StoreError when no member answers,
        SealingError when a secret cannot be opened with `sealer`."""
        conn = EtcdConnection(target.endpoints, tls=tls)
        if call_timeout is not None:
            conn.call_timeout = call_timeout
        if deadline is not None:
            conn.deadline = deadline
        store = cls(target, conn, sealer=sealer)
        try:
            revision, records = await store._read_all()
            for record in records:
                store._tables.put(record.obj)
                store._revs[(record.kind, record.obj.id)] = record.revision
            store._applied = revision
            store._tasks = [
                asyncio.create_task(store._watch_loop(), name="etcd-watch"),
                asyncio.create_task(store._probe_loop(), name="etcd-probe"),
            ]
        except BaseException:
            await conn.close()
            raise
        log.info("store: etcd %s, prefix %s: %d object(s) at revision %d",
                 ",".join(target.endpoints), target.prefix, len(records), revision)
        return store

    # -- what the leadership code reads ----------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the last exchange with etcd (a call, the watch, the probe) went through."""
        return self._conn.connected

    @property
    def last_contact(self) -> float | None:
        """time.monotonic() of the last answer from etcd (None: none yet)."""
        return self._conn.last_contact

    @property
    def connection(self) -> EtcdConnection:
        """The store's connection (its members, TLS and failover), for other etcd clients in
        the manager (leases)."""
        return self._conn

    @property
    def revision(self) -> int:
        """The etcd revision the tables are at."""
        return self._applied

    # -- Store -----------------------------------------------------------------------------

    def view(self) -> ReadTx:
        return ReadView(self._tables)

    def watch(self, *, limit: int = 0) -> QueueWatch:
        """Every change from now on; see QueueWatch for `limit` (0: unbounded)."""
        return self._watchers.watch(limit=limit)

    async def update(self, fn: Callable[[WriteTx], T]) -> T:
        if self._closed:
            raise RuntimeError("store is closed")
        # The deadline covers the wait behind this process's other writes too: with etcd out
        # of reach, writes queued behind one that waits fail together, not one per deadline.
        loop = asyncio.get_running_loop()
        end = loop.time() + self._conn.deadline
        try:
            async with asyncio.timeout(self._conn.deadline):
                await self._lock.acquire()
        except TimeoutError:
            raise StoreError(f"no write went through to etcd ({', '.join(self._conn.endpoints)}) "
                             f"within {self._conn.deadline:g} s: the writes before this one "
                             "are still waiting for a member to answer") from None
        try:
            tx = Transaction(self._tables, ids.timestamp())
            result = fn(tx)
            if tx.staged:
                started = time.perf_counter()
                await self._commit(tx, max(end - loop.time(), self._conn.call_timeout))
                if self.on_commit is not None:
                    self.on_commit(time.perf_counter() - started)
            return result
        finally:
            self._lock.release()

    async def _commit(self, tx: Transaction, budget: float) -> None:
        compare: list[Any] = []
        ops: list[Any] = []
        compared: dict[tuple[Kind, str], int] = {}
        if any(obj is None for obj in tx.staged.values()):
            actor = next((c.actor for c in tx.changes if c.action == "delete"), current_actor())
            ops.append(rpc.RequestOp(request_put=rpc.PutRequest(
                key=self._actor_key, value=actor.encode())))
        for (kind, id), obj in tx.staged.items():
            key = self._key(kind, id)
            rev = compared[(kind, id)] = self._revs.get((kind, id), 0)
            if rev:
                compare.append(rpc.Compare(key=key, target=rpc.Compare.MOD,
                                           result=rpc.Compare.EQUAL, mod_revision=rev))
            else:
                compare.append(rpc.Compare(key=key, target=rpc.Compare.CREATE,
                                           result=rpc.Compare.EQUAL, create_revision=0))
            if obj is None:
                if rev:
                    ops.append(rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(
                        key=key)))
            else:
                ops.append(rpc.RequestOp(request_put=rpc.PutRequest(
                    key=key, value=self._encode(obj))))
        if len(ops) == (1 if ops and ops[0].request_put.key == self._actor_key else 0):
            return  # objects created and deleted in the same transaction: nothing to write
        # On a failed compare, where each key is now: the tables are brought that far.
        failure = [rpc.RequestOp(request_range=rpc.RangeRequest(key=c.key, keys_only=True))
                   for c in compare]
        request = rpc.TxnRequest(compare=compare, success=ops, failure=failure)

        async def txn(stubs: Stubs, seconds: float) -> Any:
            return await stubs.kv.Txn(request, timeout=seconds)

        response, ambiguous = await self._conn.call_tracked(
            txn, what=f"a transaction of {len(tx.staged)} object(s)", deadline=budget)
        revision = response.header.revision
        if response.succeeded:
            await self._caught_up(revision, what=f"its own write (revision {revision})")
            return
        await self._caught_up(revision, what=f"revision {revision} after a conflict",
                              keys=_current_revisions(compare, response))
        if ambiguous and self._holds(tx.staged):
            return  # the first attempt went through; its answer was lost
        moved = [f"{k} {i}" for (k, i), rev in compared.items() if self._revs.get((k, i), 0) != rev]
        raise ConflictError(f"{', '.join(moved[:5]) or 'an object'} changed in etcd since it "
                            "was read (another manager wrote it): read it again")

    def _holds(self, staged: dict[tuple[Kind, str], Obj | None]) -> bool:
        """Whether the tables hold exactly these objects (None: absent)."""
        for (kind, id), want in staged.items():
            obj = self._tables.objects[kind].get(id)
            if (obj is None) != (want is None) or (
                    obj is not None and want is not None
                    and _codec.encode(obj) != _codec.encode(want)):
                return False
        return True

    async def _caught_up(self, revision: int, *, what: str,
                         keys: dict[bytes, int] | None = None) -> None:
        """Until the watch applied everything up to `revision`, or brought each of `keys` to
        its mod_revision there (0: absent). StoreError after the deadline: a write stands.

        (etcd 3.4's progress reports can run ahead of a new watch's events, so a revision with
        no event under the prefix is waited for through the keys it concerns.)"""
        loop = asyncio.get_running_loop()
        end = loop.time() + self._conn.deadline
        while self._applied < revision:
            if keys is not None and all(
                    self._revs.get(key, 0) == rev
                    for key, rev in ((self._parse_key(k), r) for k, r in keys.items())
                    if key is not None):
                return
            left = end - loop.time()
            if left <= 0:
                raise StoreError(f"the store's etcd watch did not deliver {what} within "
                                 f"{self._conn.deadline:g} s (it is at revision "
                                 f"{self._applied}); the write is in etcd")
            self._advanced.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._advanced.wait()

    # -- reading ---------------------------------------------------------------------------

    async def _read_all(self, *, strict: bool = True) -> tuple[int, list[_Record]]:
        """Every object under the prefix, as of one revision, read in pages (`strict`: a
        secret that cannot be opened raises SealingError, else it is logged and left out)."""
        records: list[_Record] = []
        start, revision = self._prefix, 0
        while True:
            request = rpc.RangeRequest(key=start, range_end=self._range_end, limit=PAGE,
                                       revision=revision)

            async def page(stubs: Stubs, seconds: float, request: Any = request) -> Any:
                return await stubs.kv.Range(request, timeout=seconds)

            response = await self._conn.call(
                page, what=f"a read of {self.target.prefix} (store {self.target.url})")
            revision = revision or response.header.revision
            for kv in response.kvs:
                record = self._decode(kv.key, kv.value, kv.mod_revision, strict=strict)
                if record is not None:
                    records.append(record)
            if not response.more or not response.kvs:
                return revision, records
            start = response.kvs[-1].key + b"\0"

    def _decode(self, key: bytes, value: bytes, revision: int, *,
                strict: bool) -> _Record | None:
        """The object under `key`, or None for keys that hold none (or, unless `strict`, a
        secret that cannot be opened: logged)."""
        parsed = self._parse_key(key)
        if parsed is None:
            return None
        kind, _ = parsed
        try:
            if kind == "secret":
                obj: Obj = _sealing.decode_row(value, self._sealer)[0]
            else:
                obj = _codec.decode(CLASSES[kind], value)
        except SealingError:
            if strict:
                raise
            log.exception("store: %s at revision %d cannot be opened; left out", key, revision)
            return None
        except Exception:  # not a row Podium wrote (msgpack, field types): never stop the watch
            if strict:
                raise StoreError(f"etcd key {key.decode(errors='replace')} does not hold a "
                                 f"{kind} this manager can read") from None
            log.exception("store: %s at revision %d is not a %s; left out", key, revision, kind)
            return None
        return _Record(kind, obj, revision)

    def _parse_key(self, key: bytes) -> tuple[Kind, str] | None:
        if not key.startswith(self._prefix):
            return None
        kind, sep, id = key[len(self._prefix):].decode(errors="replace").partition("/")
        if not sep or kind not in CLASSES or not id:
            return None  # _txn/actor, or a kind of a newer version
        return kind, id  # type: ignore[return-value]

    def _key(self, kind: Kind, id: str) -> bytes:
        return self._prefix + f"{kind}/{id}".encode()

    def _encode(self, obj: Obj) -> bytes:
        return encode_value(obj, self._sealer)

    def every_object(self) -> list[Obj]:
        """Every object in the tables (shared: do not mutate)."""
        return [obj for table in self._tables.objects.values() for obj in table.values()]

    # -- the watch -------------------------------------------------------------------------

    async def _watch_loop(self) -> None:
        pause = 0.1
        while True:
            endpoint = self._conn.current
            self._moved.clear()
            reader = asyncio.create_task(self._watch(endpoint), name="etcd-watch-stream")
            mover = asyncio.create_task(self._moved.wait(), name="etcd-watch-moved")
            try:
                await asyncio.wait((reader, mover), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (reader, mover):
                    task.cancel()
                await asyncio.wait((reader, mover))  # their outcome is read below
            if reader.cancelled():
                continue  # calls moved to another member: follow them
            err = reader.exception()
            if err is None:
                pause = 0.1
                continue  # reloaded after a compaction
            if isinstance(err, grpc.aio.AioRpcError | _WatchEnded | StoreError):
                log.warning("store: etcd watch on %s ended: %s", endpoint,
                            err.details() if isinstance(err, grpc.aio.AioRpcError) else err)
            else:  # a fault of this code: the tables must not silently stop following etcd
                log.error("store: etcd watch on %s failed", endpoint, exc_info=err)
            self._conn.lost()
            self._conn.move_on(endpoint)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)

    async def _watch(self, endpoint: str) -> None:
        """One watch stream on `endpoint` from the revision after the tables'; returns after a
        reload (compaction), raises when the stream ends."""
        requests: asyncio.Queue[Any] = asyncio.Queue()
        requests.put_nowait(rpc.WatchRequest(create_request=rpc.WatchCreateRequest(
            key=self._prefix, range_end=self._range_end, start_revision=self._applied + 1)))
        call = self._conn.stubs(endpoint).watch.Watch(_drain(requests),
                                                      metadata=_WATCH_METADATA)
        try:
            async for response in call:
                self._conn.contact()
                if response.compact_revision:
                    log.warning("store: etcd compacted revision %d away before the watch read "
                                "it; reloading %s", response.compact_revision,
                                self.target.prefix)
                    await self._reload()
                    return
                if response.canceled:
                    raise _WatchEnded(response.cancel_reason or "canceled by etcd")
                if response.events:
                    self._apply(response.events)
            raise _WatchEnded("the stream closed")
        finally:
            call.cancel()

    def _apply(self, events: Iterable[Any]) -> None:
        last = self._applied
        for event in events:
            kv = event.kv
            last = max(last, kv.mod_revision)
            if kv.mod_revision <= self._applied:
                continue  # already applied (a watch resumed on another member)
            if kv.key == self._actor_key:
                self._actor = (kv.mod_revision, kv.value.decode(errors="replace"))
                continue
            if event.type == rpc.Event.DELETE:
                parsed = self._parse_key(kv.key)
                if parsed is None:
                    continue
                kind, id = parsed
                old = self._tables.objects[kind].get(id)
                self._revs.pop((kind, id), None)
                if old is None:
                    continue
                self._tables.remove(kind, id)
                actor = self._actor[1] if self._actor[0] == kv.mod_revision else "manager"
                self._publish(Change("delete", kind, old, actor))
                continue
            record = self._decode(kv.key, kv.value, kv.mod_revision, strict=False)
            if record is None:
                continue
            key = (record.kind, record.obj.id)
            action: Action = "create" if kv.create_revision == kv.mod_revision else "update"
            self._tables.put(record.obj)
            self._revs[key] = kv.mod_revision
            self._publish(Change(action, record.kind, record.obj,
                                 record.obj.meta.changed_by or "manager"))
        self._advance(last)

    def _advance(self, revision: int) -> None:
        if revision > self._applied:
            self._applied = revision
            self._advanced.set()

    def _publish(self, change: Change) -> None:
        self._watchers.publish(change)

    async def _reload(self) -> None:
        """Reads the whole prefix again and publishes what differs from the tables."""
        revision, records = await self._read_all(strict=False)
        seen: set[tuple[Kind, str]] = set()
        for record in records:
            key = (record.kind, record.obj.id)
            seen.add(key)
            if self._revs.get(key) == record.revision:
                continue
            action: Action = "update" if key in self._revs else "create"
            self._tables.put(record.obj)
            self._revs[key] = record.revision
            self._publish(Change(action, record.kind, record.obj,
                                 record.obj.meta.changed_by or "manager"))
        for key in [k for k in self._revs if k not in seen]:
            kind, id = key
            del self._revs[key]
            old = self._tables.objects[kind].get(id)
            if old is not None:
                self._tables.remove(kind, id)
                self._publish(Change("delete", kind, old, "manager"))
        self._advance(revision)

    async def _probe_loop(self) -> None:
        """Keeps `connected` and `last_contact` true to life while nothing else talks to etcd:
        a linearizable read needs a quorum behind the member."""
        request = rpc.RangeRequest(key=self._actor_key, count_only=True)

        async def probe(stubs: Stubs, seconds: float) -> Any:
            return await stubs.kv.Range(request, timeout=seconds)

        while True:
            await asyncio.sleep(PROBE_PERIOD_S / 2)
            last = self._conn.last_contact
            if last is not None and time.monotonic() - last < PROBE_PERIOD_S:
                continue
            with contextlib.suppress(StoreError):
                await self._conn.call(probe, what="a probe")

    # -- secrets ---------------------------------------------------------------------------

    async def rotate_key(self) -> tuple[str, int]:
        """Seals every secret and config under a new key of this manager's ring, in one
        transaction: (the key's id, how many). Other managers must be given the new ring (the
        file) before they can read them; the old keys stay in the ring."""
        ring = self._sealer
        if ring is None:
            raise SealingError("this store keeps secrets in plaintext (opened without a key ring)")
        key_id = ring.add_key()
        async with self._lock:
            secrets = list(self.view().secrets())
            compare = [rpc.Compare(key=self._key("secret", s.id), target=rpc.Compare.MOD,
                                   result=rpc.Compare.EQUAL,
                                   mod_revision=self._revs.get(("secret", s.id), 0))
                       for s in secrets]
            ops = [rpc.RequestOp(request_put=rpc.PutRequest(
                key=self._key("secret", s.id), value=self._encode(s))) for s in secrets]
            request = rpc.TxnRequest(compare=compare, success=ops)

            async def txn(stubs: Stubs, seconds: float) -> Any:
                return await stubs.kv.Txn(request, timeout=seconds)

            response = await self._conn.call(txn, what="re-sealing the secrets")
            await self._caught_up(response.header.revision, what="the re-sealed secrets")
            if not response.succeeded:
                raise ConflictError("a secret changed while the key rotated: rotate again")
        log.info("secrets key rotated to %s: %d secret(s) and config(s) re-sealed", key_id,
                 len(secrets))
        return key_id, len(secrets)

    # -- closing ---------------------------------------------------------------------------

    def close(self) -> None:
        """Stops the watch (the channels close in aclose())."""
        self._closed = True
        for task in self._tasks:
            task.cancel()

    async def aclose(self) -> None:
        """Idempotent."""
        self.close()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self._conn.close()


def object_key(prefix: str, obj: Obj) -> bytes:
    """The key `obj` is stored under in a store of `prefix`."""
    return f"{prefix}/{kind_of(obj)}/{obj.id}".encode()


def encode_value(obj: Obj, sealer: KeyRing | None) -> bytes:
    """What a key holds: the object as _codec encodes it, a secret's content sealed."""
    if sealer is not None and isinstance(obj, objects.Secret):
        return _sealing.encode_sealed(obj, sealer)
    return _codec.encode(obj)


class _WatchEnded(Exception):
    """etcd ended the watch (it lost its leader, or it is stopping)."""


async def _drain(queue: asyncio.Queue[Any]) -> AsyncIterator[Any]:
    while True:
        yield await queue.get()


def prefix_end(prefix: bytes) -> bytes:
    """The first key after every key starting with `prefix` (etcd's range_end)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


def _current_revisions(compare: list[Any], response: Any) -> dict[bytes, int]:
    """Each compared key's mod_revision (0: absent) from a failed transaction's ranges."""
    current = {c.key: 0 for c in compare}
    for answer in response.responses:
        for kv in answer.response_range.kvs:
            current[kv.key] = kv.mod_revision
    return current
