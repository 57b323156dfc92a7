"""The mesh's shared types: what each published port should serve, and where it forwards.

Produced by podium.agent.routing from the manager's routing tables and consumed by every mesh
data path: the asyncio proxy (podium.agent.proxy), its worker processes (podium.agent.meshpool)
and the kernel path (podium.agent.kernelmesh).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

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
