"""Routing tables for the mesh: which replicas of a service may take new connections, and where.

Pure. A replica is in its service's table while its task is live, running, ready (its check
passes, or it has none) and its node is ready or agent-down (podium.rules.routing.in_rotation): it
leaves the table as soon as it turns unhealthy, its node goes suspect or down, or the manager asks
it to stop (the agent then waits for its connections to drain before it signals the container).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from podium.manager.store import Change, ReadTx
from podium.rules import network
from podium.rules.routing import in_rotation, ingress_ports
from podium.v1 import dispatcher, objects


def node_address(node: objects.Node) -> str:
    """The address other nodes reach `node` at: its advertised one, else the session's peer."""
    if node.description.advertise_addr:
        return node.description.advertise_addr
    peer = node.status.addr  # "ipv4:10.0.0.2:51234" or "ipv6:[::1]:51234"
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]")
    return ""


def routed(service: objects.Service) -> bool:
    """Whether the service has a routing table: an ingress port, or an internal address (a
    virtual IP and a network)."""
    return bool(ingress_ports(service.spec)
                or (service.virtual_ip and service.spec.networks))


def service_endpoints(
    service: objects.Service,
    tasks: Iterable[objects.Task],
    nodes: Mapping[str, objects.Node],
) -> dispatcher.ServiceEndpoints | None:
    """The service's routing table, or None when it publishes no ingress port and has no
    internal address (a virtual IP and a network)."""
    if not routed(service):
        return None
    ports = ingress_ports(service.spec)
    internal = bool(service.virtual_ip and service.spec.networks)
    table = dispatcher.ServiceEndpoints(
        service_id=service.id, service_name=service.spec.name, ports=ports,
        routing=service.spec.routing,
    )
    if internal:
        table.virtual_ip = service.virtual_ip
        table.networks.extend(service.spec.networks)
        table.internal_ports.extend(network.internal_ports(service.spec))
    targets = {(p.protocol, p.target_port) for p in ports}
    for task in sorted(tasks, key=lambda t: t.id):
        node = nodes.get(task.node_id)
        if not in_rotation(task, node):
            continue
        assert node is not None
        addr = node_address(node)
        bindings = [b for b in task.status.ports
                    if (b.protocol, b.target_port) in targets and ":" not in b.host_ip]
        container_addr = task.status.container_addr if internal else ""
        if addr and (bindings or container_addr):
            table.endpoints.add(task_id=task.id, node_id=node.id, addr=addr, ports=bindings,
                                container_addr=container_addr,
                                relay_port=node.description.relay_port)
    return table


class EndpointTables:
    """The current table of every service with ingress ports or an internal address, kept in
    step with the store's changes: `changed()` returns the delta to push to every agent,
    `complete()` the full set for a session that just opened."""

    def __init__(self) -> None:
        self._tables: dict[str, dispatcher.ServiceEndpoints] = {}

    def complete(self) -> dispatcher.Endpoints:
        return dispatcher.Endpoints(complete=True, services=list(self._tables.values()))

    def changed(self, view: ReadTx, service_ids: Iterable[str]) -> dispatcher.Endpoints | None:
        nodes: dict[str, objects.Node] | None = None  # read once, for the first routed one
        delta = dispatcher.Endpoints()
        for service_id in sorted(set(service_ids)):
            service = view.get_service(service_id)
            table = None
            if service is not None and routed(service):
                if nodes is None:
                    nodes = {n.id: n for n in view.nodes()}
                # A service without routes is never listed: its tasks are not gathered (a
                # status change of one of 10,000 replicas would read all of them).
                table = service_endpoints(service, view.tasks_of_service(service_id), nodes)
            old = self._tables.get(service_id)
            if table is None:
                if old is not None:
                    del self._tables[service_id]
                    delta.removed.append(service_id)
            elif table != old:
                self._tables[service_id] = table
                delta.services.append(table)
        return delta if delta.services or delta.removed else None

    @staticmethod
    def affected(change: Change, view: ReadTx) -> set[str]:
        """Services whose tables a committed change may alter."""
        obj = change.obj
        if isinstance(obj, objects.Service):
            return {obj.id}
        if isinstance(obj, objects.Task):
            return {obj.service_id}
        if isinstance(obj, objects.Node):
            return {t.service_id for t in view.tasks_of_node(obj.id)}
        return set()
