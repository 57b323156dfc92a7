"""Internal routing in the manager: virtual IPs from the control API, and the routing tables
that carry them (podium.manager.controlapi, podium.manager.endpoints). No gRPC server: the
control API's handlers are called with a context whose abort raises, as grpc's does."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import grpc
import pytest

from podium.manager.controlapi import ControlAPI
from podium.manager.endpoints import service_endpoints
from podium.manager.loadbook import LoadBook
from podium.manager.store import SqliteStore
from podium.v1 import control, objects

READY = objects.NodeStatus.STATE_READY
INGRESS = objects.PortConfig.PUBLISH_MODE_INGRESS


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code}: {details}")
        self.code, self.details = code, details


class Context:
    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise Aborted(code, details)


@pytest.fixture
def store(tmp_path: pathlib.Path) -> Iterator[SqliteStore]:
    store = SqliteStore(tmp_path / "state.db")
    yield store
    store.close()


def _api(store: SqliteStore, virtual_ip_range: str = "10.96.0.0/16") -> ControlAPI:
    return ControlAPI(store=store, load=LoadBook(), virtual_ip_range=virtual_ip_range)


def _spec(name: str, *networks: str) -> objects.ServiceSpec:
    spec = objects.ServiceSpec(name=name, replicas=1)
    spec.container.image = "app:1"
    for net in networks:
        spec.networks.add(name=net)
    return spec


async def _create(api: ControlAPI, spec: objects.ServiceSpec) -> objects.Service:
    reply = await api.CreateService(control.CreateServiceRequest(spec=spec), Context())
    return reply.service


async def test_each_service_gets_its_own_virtual_ip_from_the_range(store: SqliteStore) -> None:
    api = _api(store, "10.200.0.0/24")
    services = [await _create(api, _spec(f"shop_s{n}", "shop_default")) for n in range(3)]
    assert [s.virtual_ip for s in services] == ["10.200.0.2", "10.200.0.3", "10.200.0.4"]
    # Stored, not only answered.
    stored = store.view().get_service(services[1].id)
    assert stored is not None and stored.virtual_ip == "10.200.0.3"


async def test_a_service_keeps_its_virtual_ip_across_updates(store: SqliteStore) -> None:
    api = _api(store)
    service = await _create(api, _spec("shop_web", "shop_default"))
    vip = service.virtual_ip
    assert vip
    for image in ("app:2", "app:3"):  # replaces tasks: a rolling update each time
        spec = _spec("shop_web", "shop_default", "shop_back")
        spec.container.image = image
        reply = await api.UpdateService(control.UpdateServiceRequest(
            service_id=service.id, version=service.meta.version, spec=spec), Context())
        service = reply.service
        assert service.virtual_ip == vip
    stored = store.view().get_service(service.id)
    assert stored is not None and stored.virtual_ip == vip
    # A new service does not get the address in use.
    assert (await _create(api, _spec("shop_db", "shop_default"))).virtual_ip != vip


async def test_a_full_range_refuses_the_service_saying_so(store: SqliteStore) -> None:
    api = _api(store, "10.200.0.0/28")
    for n in range(13):
        await _create(api, _spec(f"s{n}"))
    with pytest.raises(Aborted) as caught:
        await _create(api, _spec("one_more"))
    assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "every address is in use" in caught.value.details
    assert len(store.view().services()) == 13


async def test_a_bad_network_name_is_refused_naming_the_field(store: SqliteStore) -> None:
    api = _api(store)
    with pytest.raises(Aborted) as caught:
        await _create(api, _spec("shop_web", "shop default"))
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "spec.networks[0].name 'shop default'" in caught.value.details
    assert "service 'shop_web'" in caught.value.details
    assert store.view().services() == []


# -- routing tables -----------------------------------------------------------------------------

def _node(id: str, addr: str, relay_port: int = 7946) -> objects.Node:
    node = objects.Node(id=id)
    node.status.state = READY  # type: ignore[assignment]
    node.status.addr = f"ipv4:{addr}:40000"
    node.description.relay_port = relay_port
    return node


def _task(id: str, node_id: str, container_addr: str, *, ready: bool = True) -> objects.Task:
    task = objects.Task(id=id, service_id="s1", node_id=node_id)
    task.desired_state = objects.TASK_STATE_RUNNING  # type: ignore[assignment]
    task.status.state = objects.TASK_STATE_RUNNING
    task.status.ready = ready
    task.status.container_addr = container_addr
    return task


def _internal_service() -> objects.Service:
    service = objects.Service(id="s1", virtual_ip="10.96.0.7")
    service.spec.name = "shop_api"
    service.spec.networks.add(name="shop_default", aliases=["api"])
    service.spec.ports.add(target_port=8080)  # no published port: internal only
    service.spec.container.expose.append("9000")
    return service


def test_an_internal_service_has_a_table_with_its_address_networks_and_replicas() -> None:
    nodes = {"n1": _node("n1", "10.0.0.1"), "n2": _node("n2", "10.0.0.2", relay_port=7000)}
    tasks = [_task("b", "n2", "172.18.0.3"), _task("a", "n1", "172.18.0.2"),
             _task("c", "n1", "172.18.0.4", ready=False)]
    table = service_endpoints(_internal_service(), tasks, nodes)
    assert table is not None
    assert table.service_name == "shop_api"
    assert table.virtual_ip == "10.96.0.7"
    assert [(n.name, list(n.aliases)) for n in table.networks] == [("shop_default", ["api"])]
    assert list(table.internal_ports) == [8080, 9000]
    assert list(table.ports) == []  # no ingress port
    assert [(e.task_id, e.node_id, e.addr, e.container_addr, e.relay_port)
            for e in table.endpoints] == [("a", "n1", "10.0.0.1", "172.18.0.2", 7946),
                                          ("b", "n2", "10.0.0.2", "172.18.0.3", 7000)]


def test_a_replica_without_a_container_address_yet_is_left_out() -> None:
    nodes = {"n1": _node("n1", "10.0.0.1")}
    table = service_endpoints(_internal_service(), [_task("a", "n1", "")], nodes)
    assert table is not None and list(table.endpoints) == []


def test_a_service_without_networks_or_ports_has_no_table() -> None:
    service = _internal_service()
    del service.spec.networks[:]
    del service.spec.ports[:]
    assert service_endpoints(service, [_task("a", "n1", "172.18.0.2")],
                             {"n1": _node("n1", "10.0.0.1")}) is None
    # Networks but no virtual IP (a service made before internal routing): none either.
    service = _internal_service()
    service.virtual_ip = ""
    del service.spec.ports[:]
    assert service_endpoints(service, [], {}) is None


def test_an_ingress_service_without_networks_carries_no_internal_part() -> None:
    service = _internal_service()
    del service.spec.networks[:]
    service.spec.ports[0].published_port = 8080
    service.spec.ports[0].mode = INGRESS
    table = service_endpoints(service, [_task("a", "n1", "172.18.0.2")],
                              {"n1": _node("n1", "10.0.0.1")})
    assert table is not None
    assert table.virtual_ip == "" and list(table.internal_ports) == []
    assert list(table.networks) == []
    # No published binding on the task, no container address: not reachable, so not listed.
    assert list(table.endpoints) == []
