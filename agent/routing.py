"""Routing: the agent's copy of the mesh's routing tables, turned into listener settings.

The manager sends the complete set of tables when a session opens and, after that, the tables
of the services that changed. For each ingress port this yields the listener every node runs on
it and the ready replicas it forwards to (their node address and the host port the engine
published their target port on). UDP ports are not routed by the mesh.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from podium.agent.meshspec import Endpoint, ListenerSpec
from podium.rules.routing import balance_name
from podium.v1 import dispatcher, objects

log = logging.getLogger(__name__)

TCP = objects.PortConfig.PROTOCOL_TCP


@dataclass(slots=True, frozen=True)
class Route:
    """What listens on one published port, and where it forwards."""

    service: str
    # (task id, address, port) of every replica in rotation.
    backends: tuple[tuple[str, str, int], ...]
    balance: str  # a name from podium.rules.routing.BALANCE
    proxy_protocol: bool


class RoutingTable:
    def __init__(self) -> None:
        self._services: dict[str, dispatcher.ServiceEndpoints] = {}

    def apply(self, message: dispatcher.Endpoints) -> None:
        if message.complete:
            self._services.clear()
        for service_id in message.removed:
            self._services.pop(service_id, None)
        for table in message.services:
            self._services[table.service_id] = table

    def tables(self) -> list[dispatcher.ServiceEndpoints]:
        """Every service's table, internal routing included."""
        return list(self._services.values())

    def listeners(self) -> dict[int, ListenerSpec]:
        """What the mesh should serve: published port -> listener settings."""
        return {
            port: ListenerSpec(
                endpoints=tuple(Endpoint(key, host, target) for key, host, target in r.backends),
                balance=r.balance,
                proxy_protocol=r.proxy_protocol,
            )
            for port, r in self.routes().items()
        }

    def routes(self) -> dict[int, Route]:
        """Published port -> route, for every TCP ingress port."""
        routes: dict[int, Route] = {}
        for table in sorted(self._services.values(), key=lambda t: t.service_name):
            for port in table.ports:
                if port.protocol != TCP:
                    continue
                if port.published_port in routes:
                    log.warning("port %d is published by %s and %s; keeping the first",
                                port.published_port, routes[port.published_port].service,
                                table.service_name)
                    continue
                backends = tuple(
                    (e.task_id, e.addr, b.published_port)
                    for e in table.endpoints
                    for b in e.ports
                    if b.target_port == port.target_port and b.protocol == TCP
                )
                routes[port.published_port] = Route(
                    table.service_name, backends,
                    balance_name(table.routing.balance),
                    table.routing.proxy_protocol,
                )
        return routes
