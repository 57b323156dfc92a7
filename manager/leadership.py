"""Leadership: which one of several managers sharing an etcd store runs the loops and the agents'
sessions.

One key, PREFIX.leader (beside the store's objects under PREFIX/, not among them), holds the
leader's id and the addresses it advertises (its Control port and its join port, JSON). A
manager campaigns by granting itself a lease of `ttl` seconds and, in one transaction, creating
the key bound to that lease only if the key is absent (create_revision == 0). The winner keeps
the lease alive every `renew_every` seconds; the others watch the key and campaign again as
soon as it is deleted (the lease expired or was revoked), and re-read it at least every `ttl`
seconds in case their watch went quiet.

Why two managers never dispatch at once (the timing argument). Let t be the moment (on the
leader's monotonic clock) just before it sent the last keepalive that etcd acknowledged with a
positive TTL. etcd sets the lease to expire `ttl` after it handled that keepalive, which is after
t; an etcd leader change only extends leases (the new etcd leader gives every lease a full TTL).
So the key cannot be deleted by expiry before t + ttl, and no other manager can create it before
then. The leader steps down at t + ttl - `margin` at the latest: when no keepalive succeeds by then
(etcd gone, partitioned, SIGSTOPped, or answering too slowly) it calls `on_deposed`, which
synchronously cancels every loop and closes every agent session, and `may_dispatch()` turns false
at that same instant, so a loop task that runs late after an event-loop stall still finds it
false before it sends anything to an agent. The margin (a third of the TTL by default: 1 s
of the default 3 s) covers the step down's own work and the gap between the two clocks' rates
(parts per million: nothing next to a second). A keepalive answered with TTL 0 (the lease is
gone already) deposes it at once. A deposed leader revokes its lease when it can, so a clean
step down (SIGTERM) hands over at once instead of after `ttl`.

The leader's store writes are not fenced by the key: a write sent just before the step down may
still commit (it is a transaction on the objects' revisions, so a stale one fails on conflict
rather than overwriting a newer decision).

Timing with the defaults (ttl 3 s, keepalive every 0.5 s): a killed leader's key goes 2.5-3 s after
its last keepalive; a follower sees the deletion on its watch and leads within one etcd round
trip; a leader cut off from etcd stops dispatching 2 s after its last successful keepalive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import grpc
from aetcd import rpc

log = logging.getLogger(__name__)

DEFAULT_TTL_S = 3
# Each call to etcd gets this long before the next member is tried.
CALL_TIMEOUT_S = 1.0
RETRY_S = 0.2


@dataclass(frozen=True, slots=True)
class LeaderInfo:
    """Who leads, and where clients and agents reach it (HOST:PORT each)."""

    id: str
    control: str
    join: str = ""

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> LeaderInfo | None:
        try:
            fields: Any = json.loads(raw)
            return cls(id=str(fields["id"]), control=str(fields["control"]),
                       join=str(fields.get("join", "")))
        except (ValueError, KeyError, TypeError):
            return None


class EtcdUnavailable(Exception):
    """No etcd member answered a call in time."""


@dataclass(slots=True)
class EtcdStubs:
    """The etcd services leadership calls, on one member."""

    kv: Any
    lease: Any
    watch: Any


class _Etcd:
    """Stubs to one etcd member at a time: a call that fails moves to the next. `stubs_for`
    gives a member's stubs (the store's own connection, TLS included); without it, channels of
    its own with `credentials` (None: plaintext)."""

    def __init__(self, endpoints: Sequence[str], credentials: grpc.ChannelCredentials | None,
                 stubs_for: Callable[[str], Any] | None = None) -> None:
        if not endpoints:
            raise ValueError("no etcd endpoint given")
        self._endpoints = list(endpoints)
        self._credentials = credentials
        self._stubs_for = stubs_for
        self._index = 0
        self._channel: grpc.aio.Channel | None = None

    @property
    def endpoint(self) -> str:
        return self._endpoints[self._index]

    def stubs(self) -> Any:
        if self._stubs_for is not None:
            return self._stubs_for(self.endpoint)
        if self._channel is None:
            if self._credentials is None:
                self._channel = grpc.aio.insecure_channel(self.endpoint)
            else:
                self._channel = grpc.aio.secure_channel(self.endpoint, self._credentials)
        channel = self._channel
        return EtcdStubs(kv=rpc.KVStub(channel), lease=rpc.LeaseStub(channel),
                         watch=rpc.WatchStub(channel))

    async def next(self) -> None:
        """Moves to the next member (the current one failed a call)."""
        await self.close()
        self._index = (self._index + 1) % len(self._endpoints)

    async def close(self) -> None:
        if self._channel is not None:
            channel, self._channel = self._channel, None
            await channel.close()

    async def call(self, what: str, fn: Callable[[Any], Any]) -> Any:
        """fn(stubs) against each member in turn, each with CALL_TIMEOUT_S."""
        errors = []
        for _ in self._endpoints:
            try:
                async with asyncio.timeout(CALL_TIMEOUT_S):
                    return await fn(self.stubs())
            except (grpc.aio.AioRpcError, TimeoutError) as err:
                detail = err.code().name if isinstance(err, grpc.aio.AioRpcError) else "timeout"
                errors.append(f"{self.endpoint}: {detail}")
                await self.next()
        raise EtcdUnavailable(f"{what}: no etcd member answered ({'; '.join(errors)})")


class Leadership:
    """Campaigns for PREFIX/leader and keeps it while it can (see the module docstring).

    `on_elected()` runs when this manager becomes the leader, `on_deposed(why)` when it stops
    being one; both synchronously, from run()'s task. `leader` is the leader last seen (None:
    none known), `is_leader` whether this manager leads now."""

    def __init__(self, *, endpoints: Sequence[str], me: LeaderInfo, prefix: str = "/podium/v1",
                 ttl: int = DEFAULT_TTL_S, renew_every: float | None = None,
                 margin: float | None = None,
                 credentials: grpc.ChannelCredentials | None = None,
                 stubs_for: Callable[[str], Any] | None = None,
                 on_elected: Callable[[], None] = lambda: None,
                 on_deposed: Callable[[str], None] = lambda why: None) -> None:
        if ttl < 2:
            raise ValueError(f"leader ttl {ttl}: expected at least 2 seconds")
        margin = ttl / 3 if margin is None else margin
        if not 0 < margin <= ttl / 2:
            raise ValueError(f"leader margin {margin}: expected more than 0 and at most half "
                             f"the ttl ({ttl} s)")
        self.me = me
        self._base = prefix.rstrip("/")
        self.key = f"{self._base}.leader".encode()
        self.ttl = ttl
        self.renew_every = renew_every if renew_every is not None else ttl / 6
        self.margin = margin
        self._etcd = _Etcd(endpoints, credentials, stubs_for)
        self._on_elected = on_elected
        self._on_deposed = on_deposed
        self.leader: LeaderInfo | None = None
        self._leading = False
        self._deadline = 0.0  # loop time after which a leader may no longer dispatch
        self._lease = 0
        self.changed = asyncio.Event()  # set on every change of `leader` (for waiters)

    @property
    def is_leader(self) -> bool:
        return self._leading and self.may_dispatch()

    def may_dispatch(self) -> bool:
        """True while this manager leads and its lease is surely still in force."""
        return self._leading and asyncio.get_running_loop().time() < self._deadline

    def _set_leader(self, leader: LeaderInfo | None) -> None:
        if leader != self.leader:
            self.leader = leader
            log.info("leader: %s", f"{leader.id} at {leader.control}" if leader else "none")
            self.changed.set()
            self.changed = asyncio.Event()

    async def run(self) -> None:
        """Campaigns, leads, follows, until cancelled; on cancellation a leader steps down and
        revokes its lease (others take over at once)."""
        try:
            while True:
                try:
                    if await self._campaign():
                        await self._lead()
                    else:
                        await self._follow()
                except EtcdUnavailable as err:
                    log.warning("leadership: %s", err)
                    await asyncio.sleep(RETRY_S)
        finally:
            if self._leading:
                self._step_down("this manager is stopping")
            await self._revoke()
            await self._etcd.close()

    # -- campaigning and following ------------------------------------------------------

    async def _campaign(self) -> bool:
        """Creates the key under a new lease if it is absent; True when this manager won."""
        loop = asyncio.get_running_loop()
        sent = loop.time()
        grant = await self._etcd.call("lease grant", lambda stubs: stubs.lease.LeaseGrant(
            rpc.LeaseGrantRequest(TTL=self.ttl)))
        lease = grant.ID
        txn = rpc.TxnRequest(
            compare=[rpc.Compare(key=self.key, target=rpc.Compare.CREATE,
                                 result=rpc.Compare.EQUAL, create_revision=0)],
            success=[rpc.RequestOp(request_put=rpc.PutRequest(
                key=self.key, value=self.me.encode(), lease=lease))],
            failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=self.key))])
        try:
            answer = await self._etcd.call("leader txn", lambda stubs: stubs.kv.Txn(txn))
        except EtcdUnavailable:
            await self._revoke(lease)
            raise
        if answer.succeeded:
            self._lease = lease
            self._deadline = sent + self.ttl - self.margin
            self._leading = True
            self._revision = answer.header.revision
            log.info("this manager (%s) is the leader", self.me.id)
            self._set_leader(self.me)
            self._on_elected()
            return True
        await self._revoke(lease)
        kvs = answer.responses[0].response_range.kvs
        self._revision = answer.header.revision
        if kvs:
            current = LeaderInfo.decode(kvs[0].value)
            if current is not None and current.id == self.me.id:
                # A key from an earlier term of this very manager (it lost etcd while leading):
                # its lease is not being kept alive; revoke it rather than wait for it to expire.
                await self._revoke(kvs[0].lease)
                self._set_leader(None)
                return False
            self._set_leader(current)
        else:
            self._set_leader(None)
        return False

    async def _follow(self) -> None:
        """Returns once the key is gone (or `ttl` seconds passed: the caller reads it again)."""
        if self.leader is None or self.leader.id == self.me.id:
            # The key holds something unreadable, or this manager's own stale key was just
            # revoked: campaign again shortly.
            await asyncio.sleep(RETRY_S)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.ttl):
                async for event in self._watch(self._revision + 1):
                    if event.type == rpc.Event.DELETE:
                        self._set_leader(None)
                        return
                    self._set_leader(LeaderInfo.decode(event.kv.value))

    async def _watch(self, start: int) -> AsyncIterator[Any]:
        requests: asyncio.Queue[Any] = asyncio.Queue()
        await requests.put(rpc.WatchRequest(create_request=rpc.WatchCreateRequest(
            key=self.key, start_revision=start)))

        async def send() -> AsyncIterator[Any]:
            while True:
                yield await requests.get()

        call = self._etcd.stubs().watch.Watch(send())
        try:
            async for answer in call:
                if answer.compact_revision or answer.canceled:
                    return  # read the key again
                for event in answer.events:
                    yield event
        except grpc.aio.AioRpcError as err:
            log.info("leadership: watch on %s ended: %s", self._etcd.endpoint, err.code().name)
            await self._etcd.next()
        finally:
            call.cancel()

    # -- leading -------------------------------------------------------------------------

    async def _lead(self) -> None:
        """Keeps the lease alive; returns once deposed (never later than the deadline)."""
        loop = asyncio.get_running_loop()
        stream: Any = None
        try:
            while self._leading:
                try:
                    async with asyncio.timeout_at(self._deadline):
                        sent = loop.time()
                        if stream is None:
                            stream = self._etcd.stubs().lease.LeaseKeepAlive()
                        try:
                            # A frozen member may hold the write as well as the answer.
                            async with asyncio.timeout(self.renew_every):
                                answer = await self._renew(stream)
                            if answer is grpc.aio.EOF:
                                raise TimeoutError
                        except (grpc.aio.AioRpcError, TimeoutError, asyncio.InvalidStateError):
                            # The next member at once: a renewal must land within the margin.
                            stream.cancel()
                            stream = None
                            await self._etcd.next()
                            await asyncio.sleep(0.02)  # members that refuse at once: no spin
                            continue
                        if answer.TTL <= 0:
                            self._step_down("its lease expired")
                            return
                        self._deadline = sent + self.ttl - self.margin
                        await asyncio.sleep(self.renew_every)
                except TimeoutError:
                    self._step_down(f"no lease renewal for {self.ttl - self.margin:g} s "
                                    "(etcd unreachable or too slow)")
                    return
        finally:
            if stream is not None:
                stream.cancel()

    async def _renew(self, stream: Any) -> Any:
        await stream.write(rpc.LeaseKeepAliveRequest(ID=self._lease))
        return await stream.read()

    def _step_down(self, why: str) -> None:
        if not self._leading:
            return
        self._leading = False
        self._deadline = 0.0
        log.warning("this manager steps down as leader: %s", why)
        self._set_leader(None)
        self._on_deposed(why)

    async def _revoke(self, lease: int | None = None) -> None:
        """Best effort: a lease that cannot be revoked expires on its own."""
        if lease is None:
            lease, self._lease = self._lease, 0
        if not lease:
            return
        with contextlib.suppress(EtcdUnavailable, grpc.aio.AioRpcError):
            await self._etcd.call("lease revoke", lambda stubs: stubs.lease.LeaseRevoke(
                rpc.LeaseRevokeRequest(ID=lease)))

    async def agree(self, name: str, value: bytes) -> bytes:
        """What every manager of this store holds under PREFIX.NAME: `value` if this manager is
        the first to say (it is stored), else what the first one stored. EtcdUnavailable when
        no member answers."""
        key = f"{self._base}.{name}".encode()
        txn = rpc.TxnRequest(
            compare=[rpc.Compare(key=key, target=rpc.Compare.CREATE,
                                 result=rpc.Compare.EQUAL, create_revision=0)],
            success=[rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value))],
            failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=key))])
        answer = await self._etcd.call(f"agreeing on {name}", lambda stubs: stubs.kv.Txn(txn))
        if answer.succeeded:
            return value
        kvs = answer.responses[0].response_range.kvs
        return bytes(kvs[0].value) if kvs else value

    async def resign(self) -> None:
        """Steps down and lets another manager lead at once (a clean stop)."""
        if self._leading:
            self._step_down("it resigned")
        await self._revoke()
