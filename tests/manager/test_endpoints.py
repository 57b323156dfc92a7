"""Routing tables: who is in rotation, and the deltas pushed to agents."""

from __future__ import annotations

import pathlib

from podium.manager.endpoints import EndpointTables, node_address, service_endpoints
from podium.manager.store import SqliteStore, WriteTx
from podium.v1 import objects

READY = objects.NodeStatus.STATE_READY
INGRESS = objects.PortConfig.PUBLISH_MODE_INGRESS


def _service() -> objects.Service:
    svc = objects.Service(id="s1")
    svc.spec.name = "web"
    svc.spec.ports.add(target_port=80, published_port=8080, mode=INGRESS)
    svc.spec.ports.add(target_port=9000)  # no published port: not in the mesh
    return svc


def _node(id: str, addr: str, state: int = READY) -> objects.Node:
    node = objects.Node(id=id)
    node.status.state = state  # type: ignore[assignment]
    node.status.addr = f"ipv4:{addr}:40000"
    return node


def _task(id: str, node_id: str, *, ready: bool = True, desired: int = 60) -> objects.Task:
    task = objects.Task(id=id, service_id="s1", node_id=node_id)
    task.desired_state = desired  # type: ignore[assignment]
    task.status.state = objects.TASK_STATE_RUNNING
    task.status.ready = ready
    task.status.ports.add(target_port=80, published_port=32768, host_ip="0.0.0.0")
    task.status.ports.add(target_port=80, published_port=32768, host_ip="::")
    return task


def test_only_ready_replicas_on_ready_nodes_are_in_rotation() -> None:
    nodes = {"n1": _node("n1", "10.0.0.1"),
             "n2": _node("n2", "10.0.0.2", objects.NodeStatus.STATE_SUSPECT)}
    tasks = [_task("a", "n1"), _task("b", "n1", ready=False), _task("c", "n2"),
             _task("d", "n1", desired=objects.TASK_STATE_SHUTDOWN)]
    table = service_endpoints(_service(), tasks, nodes)
    assert table is not None
    assert [(e.task_id, e.addr, e.ports[0].published_port) for e in table.endpoints] == [
        ("a", "10.0.0.1", 32768)]
    assert len(table.endpoints[0].ports) == 1  # the IPv4 binding only
    assert [p.published_port for p in table.ports] == [8080]


def test_services_without_ingress_ports_have_no_table() -> None:
    svc = _service()
    del svc.spec.ports[0]
    assert service_endpoints(svc, [], {}) is None


def test_node_address_prefers_the_advertised_one() -> None:
    node = _node("n1", "10.0.0.1")
    assert node_address(node) == "10.0.0.1"
    node.status.addr = "ipv6:[fd00::2]:5555"
    assert node_address(node) == "fd00::2"
    node.description.advertise_addr = "192.168.1.5"
    assert node_address(node) == "192.168.1.5"


def test_tables_push_only_what_changed(tmp_path: pathlib.Path) -> None:
    store = SqliteStore(tmp_path / "state.db")

    def seed(tx: WriteTx) -> None:
        tx.create(_node("n1", "10.0.0.1"))
        tx.create(_service())
        tx.create(_task("a", "n1"))

    store.update_now(seed)
    routes = EndpointTables()
    first = routes.changed(store.view(), ["s1"])
    assert first is not None and [e.task_id for e in first.services[0].endpoints] == ["a"]
    assert routes.changed(store.view(), ["s1"]) is None  # nothing new

    def unready(tx: WriteTx) -> None:
        task = tx.get_task("a")
        assert task is not None
        task.status.ready = False
        tx.update(task)

    store.update_now(unready)
    delta = routes.changed(store.view(), ["s1"])
    assert delta is not None and list(delta.services[0].endpoints) == []
    store.update_now(lambda tx: tx.delete(tx.get_service("s1")))  # type: ignore[arg-type]
    delta = routes.changed(store.view(), ["s1"])
    assert delta is not None and list(delta.removed) == ["s1"]
    assert list(routes.complete().services) == []
    store.close()
