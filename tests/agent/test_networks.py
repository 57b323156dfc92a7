"""podium.agent._networks and the network part of podium.agent._container: pure, no engine."""

from __future__ import annotations

from typing import Any

from podium.agent._container import container_config
from podium.agent._networks import LABEL_NETWORK, create_body, members
from podium.v1 import objects


def inspected(name: str | None, containers: dict[str, str], *,
              engine_name: str = "") -> dict[str, Any]:
    """A network as the engine's inspect shows it (only the fields read)."""
    return {
        "Name": engine_name or f"podium_{name}",
        "Labels": {LABEL_NETWORK: name} if name else {"com.example": "x"},
        "Containers": {cid: {"Name": cid, "IPv4Address": f"{addr}/16" if addr else "",
                             "IPv6Address": ""}
                       for cid, addr in containers.items()},
    }


def test_members_maps_each_container_address_to_its_podium_networks() -> None:
    found = members([
        inspected("shop_default", {"c1": "172.18.0.2", "c2": "172.18.0.3"}),
        inspected("shop_back", {"c2": "172.19.0.2", "c3": "172.19.0.3"}),
        inspected(None, {"c4": "172.17.0.2"}, engine_name="bridge"),  # not Podium's
    ])
    both = frozenset({"shop_default", "shop_back"})
    assert found == {"172.18.0.2": frozenset({"shop_default"}),
                     # a container on two networks may be reached from either of its addresses
                     "172.18.0.3": both, "172.19.0.2": both,
                     "172.19.0.3": frozenset({"shop_back"})}


def test_members_copes_with_what_the_engine_leaves_out() -> None:
    assert members([]) == {}
    assert members([{"Name": "podium_x", "Labels": None, "Containers": None}]) == {}
    assert members([{"Labels": {LABEL_NETWORK: "x"}, "Containers": None}]) == {}
    # An endpoint without an address yet (the container is starting) is not listed.
    assert members([inspected("x", {"c1": ""})]) == {}


def test_the_engine_network_is_named_and_labelled_for_its_podium_network() -> None:
    body = create_body("shop_default")
    assert body["Name"] == "podium_shop_default"
    assert body["Driver"] == "bridge"
    assert body["Labels"] == {LABEL_NETWORK: "shop_default"}


def _task(*networks: str, dns: tuple[str, ...] = ()) -> objects.Task:
    spec = objects.ServiceSpec(name="shop_web", container=objects.ContainerSpec(image="img:1"))
    spec.container.dns.extend(dns)
    for name in networks:
        spec.networks.add(name=name)
    return objects.Task(id="t1", service_id="s1", slot=1, spec=spec)


def test_a_container_joins_its_first_network_and_asks_the_agents_name_server_first() -> None:
    config = container_config(_task("shop_default", "shop_back", dns=("9.9.9.9", "10.96.0.1")),
                              "n1", resolver="10.96.0.1", network_ids=["id-default", "id-back"])
    host = config["HostConfig"]
    assert host["NetworkMode"] == "id-default"
    assert host["Dns"] == ["10.96.0.1", "9.9.9.9"]  # the resolver once, first
    assert config["NetworkingConfig"] == {"EndpointsConfig": {"id-default": {}}}


def test_without_ids_the_first_network_is_named_by_its_engine_name() -> None:
    config = container_config(_task("shop_default"), "n1", resolver="10.96.0.1")
    assert config["HostConfig"]["NetworkMode"] == "podium_shop_default"
    assert config["HostConfig"]["Dns"] == ["10.96.0.1"]


def test_without_a_resolver_the_specs_own_name_servers_stay() -> None:
    config = container_config(_task("shop_default", dns=("9.9.9.9",)), "n1",
                              network_ids=["id-default"])
    assert config["HostConfig"]["Dns"] == ["9.9.9.9"]


def test_a_container_without_networks_keeps_the_engines_defaults() -> None:
    config = container_config(_task(), "n1", resolver="10.96.0.1")
    assert "NetworkMode" not in config["HostConfig"]
    assert "Dns" not in config["HostConfig"]
    assert "NetworkingConfig" not in config
