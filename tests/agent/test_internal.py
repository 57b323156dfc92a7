"""podium.agent.internal: InternalMesh turns routing tables into listeners on virtual IPs, names
and relay targets. Virtual IPs here are loopback addresses (127.77.0.0/24, all on lo already);
the `ip` step is a recorder, so nothing on the host changes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from podium.agent.internal import InternalMesh
from podium.agent.meshspec import Endpoint
from podium.agent.relay import Relay, preamble
from podium.v1 import dispatcher
from tests.agent._proxykit import HOST, Backend, free_port

VIP, OTHER_VIP = "127.77.0.2", "127.77.0.3"


class Ip:
    """Records the `ip` batches InternalMesh would run."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    async def __call__(self, lines: list[str]) -> str:
        self.lines += lines
        return ""


def table(name: str, vip: str, port: int, *endpoints: dispatcher.Endpoint,
          networks: dict[str, list[str]] | None = None) -> dispatcher.ServiceEndpoints:
    t = dispatcher.ServiceEndpoints(service_id=f"id-{name}", service_name=name, virtual_ip=vip,
                                    internal_ports=[port], endpoints=list(endpoints))
    for network, aliases in (networks or {"shop_default": []}).items():
        t.networks.add(name=network, aliases=aliases)
    return t


def local(task_id: str, container_addr: str = HOST) -> dispatcher.Endpoint:
    return dispatcher.Endpoint(task_id=task_id, node_id="here", addr="10.0.0.1",
                               container_addr=container_addr, relay_port=7946)


def remote(task_id: str, relay_port: int, container_addr: str = "172.18.0.9",
           ) -> dispatcher.Endpoint:
    return dispatcher.Endpoint(task_id=task_id, node_id="there", addr=HOST,
                               container_addr=container_addr, relay_port=relay_port)


@pytest.fixture
async def ip() -> Ip:
    return Ip()


def mesh_with(ip: Ip, members: dict[str, frozenset[str]]) -> InternalMesh:
    async def read() -> dict[str, frozenset[str]]:
        return members
    return InternalMesh(node_id="here", members=read, connect_timeout=0.5, run_ip=ip)


@pytest.fixture
async def relay_and_mesh(ip: Ip) -> AsyncIterator[tuple[Relay, InternalMesh]]:
    mesh = mesh_with(ip, {HOST: frozenset({"shop_default"})})
    relay = Relay(lookup=mesh.relay_target, host=HOST, port=0, connect_timeout=0.5)
    await relay.start()
    try:
        yield relay, mesh
    finally:
        await relay.close()
        await mesh.close()


def endpoints(mesh: InternalMesh, vip: str, port: int) -> list[Endpoint]:
    """What the listener on vip:port forwards to."""
    return list(mesh._meshes[vip]._listeners[port].endpoints)


async def _ask(host: str, port: int) -> str:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"?\n")
        async with asyncio.timeout(5):
            return (await reader.readline()).decode().strip()
    finally:
        writer.close()


async def test_local_replicas_are_dialled_at_their_container_address(
    relay_and_mesh: tuple[Relay, InternalMesh], ip: Ip,
) -> None:
    _, mesh = relay_and_mesh
    async with Backend("a") as backend:
        assert await mesh.apply([table("shop_web", VIP, backend.port, local("t1"))]) == []
        assert ip.lines == [f"address add {VIP}/32 dev lo"]
        await mesh.refresh()
        assert await _ask(VIP, backend.port) == "a"
        assert endpoints(mesh, VIP, backend.port) == [Endpoint("t1", HOST, backend.port)]


async def test_remote_replicas_are_reached_through_their_nodes_relay(
    relay_and_mesh: tuple[Relay, InternalMesh],
) -> None:
    relay, mesh = relay_and_mesh
    async with Backend("b") as backend:
        # The other node's relay is `relay`: it serves what this very mesh would serve, so the
        # replica is announced as local too (its relay target) under another task id.
        assert await mesh.apply([
            table("shop_web", VIP, backend.port, remote("t2", relay.port, HOST)),
            table("shop_web_relay_side", OTHER_VIP, backend.port, local("t2")),
        ]) == []
        await mesh.refresh()
        assert await _ask(VIP, backend.port) == "b"
        assert endpoints(mesh, VIP, backend.port) == [
            Endpoint("t2", HOST, relay.port, preamble("t2", backend.port))]


async def test_a_remote_replica_without_a_relay_port_is_left_out(
    relay_and_mesh: tuple[Relay, InternalMesh],
) -> None:
    _, mesh = relay_and_mesh
    async with Backend("a") as backend:
        no_relay = remote("t9", 0, HOST)
        assert await mesh.apply([table("shop_web", VIP, backend.port, no_relay,
                                       local("t1"))]) == []
        await mesh.refresh()
        assert {await _ask(VIP, backend.port) for _ in range(4)} == {"a"}


async def test_a_container_on_another_network_is_not_admitted(ip: Ip) -> None:
    mesh = mesh_with(ip, {HOST: frozenset({"other_default"})})
    try:
        async with Backend("a") as backend:
            assert await mesh.apply([table("shop_web", VIP, backend.port, local("t1"))]) == []
            await mesh.refresh()
            assert await _ask(VIP, backend.port) == ""  # closed at once
    finally:
        await mesh.close()
    assert ip.lines[-1] == f"address del {VIP}/32 dev lo"  # taken back at close


async def test_names_answer_only_on_the_askers_networks(ip: Ip) -> None:
    peer_shop, peer_blog, stranger = "172.18.0.2", "172.19.0.2", "172.20.0.2"
    mesh = mesh_with(ip, {peer_shop: frozenset({"shop_default"}),
                          peer_blog: frozenset({"blog_default", "shared"})})
    try:
        await mesh.apply([
            table("shop_web", VIP, free_port(), networks={"shop_default": ["web"]}),
            table("blog_web", OTHER_VIP, free_port(), networks={"blog_default": ["web", "Www"],
                                                     "shared": []}),
        ])
        await mesh.refresh()
        assert mesh.lookup(peer_shop, "web") == VIP
        assert mesh.lookup(peer_shop, "shop_web") == VIP
        assert mesh.lookup(peer_shop, "blog_web") is None  # another stack's service
        assert mesh.lookup(peer_blog, "web") == OTHER_VIP
        assert mesh.lookup(peer_blog, "www") == OTHER_VIP  # names are case-insensitive
        assert mesh.lookup(peer_blog, "shop_web") is None
        assert mesh.lookup(stranger, "web") is None
        assert mesh.knows(peer_shop) and not mesh.knows(stranger)
    finally:
        await mesh.close()


async def test_relay_targets_are_this_nodes_replicas_on_internal_ports(ip: Ip) -> None:
    mesh = mesh_with(ip, {})
    try:
        port = free_port()
        await mesh.apply([table("shop_web", VIP, port, local("t1", "172.18.0.5"),
                                remote("t2", 7946, "172.18.0.6"))])
        assert mesh.relay_target("t1", port) == "172.18.0.5"
        assert mesh.relay_target("t1", port + 1) is None  # not a port the service serves
        assert mesh.relay_target("t3", port) is None
        # A replica on another node: its container address means nothing here (each node's
        # engine picks its own subnets, so it may be a different container on this one).
        assert mesh.relay_target("t2", port) is None
        await mesh.apply([])  # the service is gone: so are its targets and its address
        assert mesh.relay_target("t1", port) is None
        assert ip.lines[-1] == f"address del {VIP}/32 dev lo"
    finally:
        await mesh.close()


async def test_the_resolver_address_goes_on_lo_with_the_first_service(ip: Ip) -> None:
    mesh = mesh_with(ip, {})
    mesh.configure("127.77.0.1")
    try:
        await mesh.apply([table("shop_web", VIP, free_port())])
        assert sorted(ip.lines) == ["address add 127.77.0.1/32 dev lo",
                                    f"address add {VIP}/32 dev lo"]
    finally:
        await mesh.close()
    assert sorted(ip.lines[2:]) == ["address del 127.77.0.1/32 dev lo",
                                    f"address del {VIP}/32 dev lo"]
