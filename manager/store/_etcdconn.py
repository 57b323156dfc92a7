"""The connection under EtcdStore: the store URL, TLS to etcd, and calls that move on to the
next member when one fails.

A store URL names every member a manager may talk to:

    etcd://HOST:PORT[,HOST:PORT...][/PREFIX]      plaintext
    etcds://HOST:PORT[,HOST:PORT...][/PREFIX]     TLS (the cluster CA's certificates)

`EtcdConnection.call` sends one request to the member in use; a member that does not answer
(refused, unreachable, no leader, too slow) is left for the next one, round the list, until
the call's deadline: then StoreError names every member tried and why it failed. It never
waits longer than its deadline, so a manager cut off from etcd learns it within seconds.
`connected` and `last_contact` say whether the last exchange with etcd went through and when
the last one did (what a leader needs before it acts on its lease).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from aetcd import rpc

from podium.manager.store._base import StoreError

log = logging.getLogger(__name__)
R = TypeVar("R")

DEFAULT_PREFIX = "/podium/v1"
ACCEPTED = ("etcd://HOST:PORT[,HOST:PORT...][/PREFIX] (plaintext) or "
            "etcds://HOST:PORT[,HOST:PORT...][/PREFIX] (TLS)")
# One attempt on one member; a whole call (every member, round the list) within DEADLINE_S.
CALL_TIMEOUT_S = 2.0
DEADLINE_S = 5.0
# Status codes after which another member may well answer: the request is tried there.
_MOVE_ON = frozenset({
    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
})
# Codes after which a write may have been applied although no answer came back.
_AMBIGUOUS = frozenset({grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED,
                        grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL})
_CHANNEL_OPTIONS = [
    # The first read of a large cluster's state comes in pages, but one object can be large.
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    # A member that comes back is reconnected within a second, not after minutes of backoff.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # A member that stopped answering (a hung host) is noticed on the open watch too. etcd
    # refuses pings more often than every 5 s by default.
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 3_000),
]


@dataclass(frozen=True, slots=True)
class EtcdTarget:
    """A parsed store URL."""
    url: str
    endpoints: tuple[str, ...]
    prefix: str
    tls: bool


def parse_url(url: str) -> EtcdTarget:
    """The members and key prefix of an etcd store URL; ValueError naming what is wrong."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("etcd", "etcds"):
        raise ValueError(f"store URL {url!r}: expected {ACCEPTED}")
    hosts, slash, prefix = rest.partition("/")
    endpoints = []
    for part in hosts.split(","):
        host, colon, port = part.strip().rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"store URL {url!r}: {part.strip()!r} is not HOST:PORT (a port "
                             f"from 1 to 65535); expected {ACCEPTED}")
        endpoints.append(f"{host}:{int(port)}")
    prefix = "/" + prefix.strip("/") if slash and prefix.strip("/") else DEFAULT_PREFIX
    if any(c.isspace() for c in prefix):
        raise ValueError(f"store URL {url!r}: the prefix {prefix!r} contains white space")
    return EtcdTarget(url, tuple(dict.fromkeys(endpoints)), prefix, scheme == "etcds")


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    """PEM: the CA that signed the members' certificates, and the client's certificate and key."""
    ca: bytes
    certificate: bytes
    key: bytes


@dataclass(slots=True)
class Stubs:
    kv: Any
    watch: Any
    lease: Any
    maintenance: Any


@dataclass(slots=True)
class _Attempt:
    endpoint: str
    error: str


class EtcdConnection:
    """Channels to the members of one etcd cluster, one member in use at a time."""

    def __init__(self, endpoints: tuple[str, ...], *, tls: TlsMaterial | None = None,
                 call_timeout: float = CALL_TIMEOUT_S, deadline: float = DEADLINE_S) -> None:
        if not endpoints:
            raise ValueError("no etcd endpoint")
        self.endpoints = endpoints
        self.call_timeout = call_timeout
        self.deadline = deadline
        self._credentials = None if tls is None else grpc.ssl_channel_credentials(
            root_certificates=tls.ca, private_key=tls.key, certificate_chain=tls.certificate)
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[str, Stubs] = {}
        self._current = 0
        # Whether the last exchange with etcd went through, and when (time.monotonic()) one
        # last did; None before the first.
        self.connected = False
        self.last_contact: float | None = None
        # Called with the member given up on when calls move on to the next one (the store
        # moves its watch along).
        self.on_move: Callable[[str], None] | None = None

    @property
    def current(self) -> str:
        return self.endpoints[self._current]

    def stubs(self, endpoint: str) -> Stubs:
        stubs = self._stubs.get(endpoint)
        if stubs is None:
            if self._credentials is None:
                channel = grpc.aio.insecure_channel(endpoint, options=_CHANNEL_OPTIONS)
            else:
                channel = grpc.aio.secure_channel(endpoint, self._credentials,
                                                  options=_CHANNEL_OPTIONS)
            self._channels[endpoint] = channel
            stubs = self._stubs[endpoint] = Stubs(
                rpc.KVStub(channel), rpc.WatchStub(channel), rpc.LeaseStub(channel),
                rpc.MaintenanceStub(channel))
        return stubs

    def contact(self) -> None:
        """Records an answer from etcd."""
        self.connected = True
        self.last_contact = time.monotonic()

    def lost(self) -> None:
        self.connected = False

    def move_on(self, failed: str) -> None:
        """Leaves `failed` for the next member (unless another caller already did)."""
        if self.current == failed and len(self.endpoints) > 1:
            self._current = (self._current + 1) % len(self.endpoints)
            log.warning("etcd member %s failed; using %s", failed, self.current)
            if self.on_move is not None:
                self.on_move(failed)

    async def call(self, fn: Callable[[Stubs, float], Awaitable[R]], *, what: str,
                   deadline: float | None = None) -> R:
        """fn(stubs, timeout) on the member in use, moving on as needed (see the module)."""
        result, _ = await self.call_tracked(fn, what=what, deadline=deadline)
        return result

    async def call_tracked(self, fn: Callable[[Stubs, float], Awaitable[R]], *, what: str,
                           deadline: float | None = None) -> tuple[R, bool]:
        """call(), and whether an earlier attempt may have been applied without an answer (a
        write retried after a timeout must then check whether its first attempt went through).
        """
        loop = asyncio.get_running_loop()
        budget = self.deadline if deadline is None else deadline
        end = loop.time() + budget
        attempts: list[_Attempt] = []
        ambiguous = False
        pause = 0.05
        while True:
            endpoint = self.current
            timeout = min(self.call_timeout, end - loop.time())
            if timeout <= 0:
                break
            try:
                result = await fn(self.stubs(endpoint), timeout)
            except grpc.aio.AioRpcError as err:
                code = err.code()
                if code not in _MOVE_ON:
                    self.contact()  # it answered, with a refusal
                    raise StoreError(f"etcd {endpoint} refused {what}: "
                                     f"{code.name}: {err.details()}{_hint(err)}") from None
                ambiguous = ambiguous or code in _AMBIGUOUS
                attempts.append(_Attempt(endpoint, f"{code.name}: {err.details()}"))
                self.move_on(endpoint)
                if len(attempts) % len(self.endpoints) == 0:  # a whole round failed
                    await asyncio.sleep(min(pause, max(0.0, end - loop.time())))
                    pause = min(pause * 2, 0.5)
                continue
            self.contact()
            return result, ambiguous
        self.lost()
        tried = "; ".join(f"{a.endpoint} ({a.error})" for a in _last_per_endpoint(attempts))
        raise StoreError(f"no etcd member answered {what} within {budget:g} s (tried "
                         f"{tried or ', '.join(self.endpoints)})")

    async def close(self) -> None:
        channels = list(self._channels.values())
        self._channels.clear()
        self._stubs.clear()
        for channel in channels:
            await channel.close()


def _last_per_endpoint(attempts: list[_Attempt]) -> list[_Attempt]:
    last = {a.endpoint: a for a in attempts}
    return list(last.values())


def _hint(err: grpc.aio.AioRpcError) -> str:
    details = err.details() or ""
    if "too many operations" in details:
        return " (start etcd with a larger --max-txn-ops, e.g. 65536: one store write is one " \
               "transaction)"
    if "request is too large" in details:
        return " (start etcd with a larger --max-request-bytes, e.g. 33554432)"
    return ""

