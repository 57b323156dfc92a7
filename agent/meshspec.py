"""The mesh's shared types: what each published port should serve, and where it forwards.

Produced by podium.agent.routing from the manager's routing tables and consumed by every mesh
data path: the asyncio proxy (podium.agent.proxy), its worker processes (podium.agent.meshpool)
and the kernel path (podium.agent.kernelmesh).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from podium.rules.routing import LEAST_CONNECTIONS


@dataclass(slots=True, frozen=True)
class Endpoint:
    """One replica a listener may forward to."""

    key: str
    host: str
    port: int
    # Sent first on the connection to host:port, which is then another node's relay: its first
    # byte answers b"+" when it reached the replica (see podium.agent.relay).
    preamble: bytes = b""


@dataclass(slots=True, frozen=True)
class ListenerSpec:
    """What one published port should do."""

    endpoints: tuple[Endpoint, ...] = ()
    balance: str = LEAST_CONNECTIONS  # a name from podium.rules.routing.BALANCE
    proxy_protocol: bool = False
    # Whether a client at this peer address (a sockaddr) may connect; None: anyone. Used in
    # this process only (the mesh workers never get one).
    admit: Callable[[object], bool] | None = field(default=None, compare=False)


# Upper bounds (seconds) of the backend connect time histogram's buckets; one more, +Inf, after.
# How long the mesh waits for a replica to accept a connection before it tries the next one:
# just over the kernel's first SYN retransmit (1 s), so that a SYN that a replica's full accept
# queue dropped is sent once more before the replica is given up. At 1 s the timer fired just
# as the retransmit went out (HAProxy's advice for `timeout connect` is the same: slightly above
# a multiple of the retransmit time).
CONNECT_TIMEOUT_S = 1.5
CONNECT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


@dataclass(slots=True)
class Traffic:
    """What one published port's mesh moved, as counters that only grow: bytes each way, the
    backend connections it could not make, and how long those it made took to connect."""

    bytes_in: int = 0  # from clients, forwarded to backends
    bytes_out: int = 0  # from backends, forwarded to clients
    connect_failures: int = 0
    # Connections made per CONNECT_BUCKETS bucket (not cumulative; the last is +Inf), and the sum
    # of their connect times.
    connects: list[int] = field(default_factory=lambda: [0] * (len(CONNECT_BUCKETS) + 1))
    connect_seconds: float = 0.0

    def connected(self, seconds: float) -> None:
        i = 0
        for bound in CONNECT_BUCKETS:
            if seconds <= bound:
                break
            i += 1
        self.connects[i] += 1
        self.connect_seconds += seconds

    def add(self, other: Traffic) -> None:
        self.bytes_in += other.bytes_in
        self.bytes_out += other.bytes_out
        self.connect_failures += other.connect_failures
        self.connects = [a + b for a, b in zip(self.connects, other.connects, strict=True)]
        self.connect_seconds += other.connect_seconds

    def encode(self) -> list[object]:
        """For the mesh workers' reports (msgpack)."""
        return [self.bytes_in, self.bytes_out, self.connect_failures, self.connects,
                self.connect_seconds]

    @classmethod
    def decode(cls, data: list[Any]) -> Traffic:
        bytes_in, bytes_out, failures, connects, seconds = data
        return cls(int(bytes_in), int(bytes_out), int(failures), [int(n) for n in connects],
                   float(seconds))


def add_traffic(total: dict[int, Traffic], more: dict[int, Traffic]) -> None:
    """Adds `more` (port -> Traffic) into `total`."""
    for port, traffic in more.items():
        total.setdefault(port, Traffic()).add(traffic)
