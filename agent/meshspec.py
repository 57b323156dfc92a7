"""The mesh's shared types: what each published port should serve, and where it forwards.

Produced by podium.agent.routing from the manager's routing tables and consumed by every mesh
data path: the asyncio proxy (podium.agent.proxy), its worker processes (podium.agent.meshpool)
and the kernel path (podium.agent.kernelmesh).
"""

from __future__ import annotations

from dataclasses import dataclass

from podium.rules.routing import LEAST_CONNECTIONS


@dataclass(slots=True, frozen=True)
class Endpoint:
    """One replica a listener may forward to."""

    key: str
    host: str
    port: int


@dataclass(slots=True, frozen=True)
class ListenerSpec:
    """What one published port should do."""

    endpoints: tuple[Endpoint, ...] = ()
    balance: str = LEAST_CONNECTIONS  # a name from podium.rules.routing.BALANCE
    proxy_protocol: bool = False
