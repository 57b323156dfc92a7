"""podium.rules.network: virtual IP allocation, internal ports, names and network checks."""

from __future__ import annotations

import pytest

from podium.rules import network
from podium.v1 import objects

TCP, UDP = objects.PortConfig.PROTOCOL_TCP, objects.PortConfig.PROTOCOL_UDP


def _spec(*networks: tuple[str, list[str]], name: str = "shop_web") -> objects.ServiceSpec:
    spec = objects.ServiceSpec(name=name)
    for net, aliases in networks:
        spec.networks.add(name=net, aliases=aliases)
    return spec


def test_the_resolver_is_the_first_address_and_virtual_ips_start_after_it() -> None:
    assert network.resolver_address("10.96.0.0/16") == "10.96.0.1"
    assert network.allocate("10.96.0.0/16", []) == "10.96.0.2"


def test_allocate_takes_the_lowest_free_address() -> None:
    assert network.allocate("10.96.0.0/16", ["10.96.0.2", "10.96.0.3", "10.96.0.5"]) == (
        "10.96.0.4")
    # A service removed frees its address for the next one.
    assert network.allocate("10.96.0.0/16", ["10.96.0.3"]) == "10.96.0.2"
    # Addresses outside the range (another manager's) do not matter.
    assert network.allocate("10.96.0.0/16", ["10.1.0.2", ""]) == "10.96.0.2"


def test_allocate_never_hands_out_the_resolver_network_or_broadcast_address() -> None:
    used: list[str] = []
    while True:
        try:
            used.append(network.allocate("192.168.7.0/28", used))
        except ValueError as err:
            message = str(err)
            break
    assert used == [f"192.168.7.{n}" for n in range(2, 15)]
    assert "192.168.7.0/28" in message and "every address is in use" in message
    assert "13 services" in message


@pytest.mark.parametrize(("text", "accepted"), [
    ("10.96.0.1/16", "IPv4 network"),  # host bits set
    ("nonsense", "IPv4 network"),
    ("fd00::/64", "/28 or larger"),
    ("10.96.0.0/29", "/28 or larger"),
])
def test_a_bad_range_is_refused_saying_what_is_accepted(text: str, accepted: str) -> None:
    with pytest.raises(ValueError, match="virtual IP range") as caught:
        network.parse_range(text)
    assert repr(text) in str(caught.value)
    assert accepted in str(caught.value)
    assert network.DEFAULT_RANGE in str(caught.value)


def test_internal_ports_are_the_tcp_targets_and_exposed_ports_in_order() -> None:
    spec = _spec()
    spec.ports.add(target_port=8080, published_port=80, protocol=TCP)
    spec.ports.add(target_port=53, protocol=UDP)  # udp: not served on the virtual IP
    spec.container.expose.extend(["80", "443/tcp", "8000-8002", "9000/udp", "5000-x", "",
                                  "8080"])
    assert network.internal_ports(spec) == [80, 443, 8000, 8001, 8002, 8080]


def test_internal_ports_skip_ranges_out_of_bounds() -> None:
    spec = _spec()
    spec.container.expose.extend(["0", "70000", "10-5", "1-2000"])
    assert network.internal_ports(spec) == []


def test_a_service_answers_to_its_name_and_its_aliases_on_its_networks_only() -> None:
    spec = _spec(("shop_default", ["web", "shop_web", "www"]), ("shop_back", []))
    assert network.names_on(spec, "shop_default") == ["shop_web", "web", "www"]
    assert network.names_on(spec, "shop_back") == ["shop_web"]
    assert network.names_on(spec, "other_default") == []


def test_good_networks_pass_the_check() -> None:
    assert network.check_networks(_spec(("shop_default", ["web"]), ("shop.back-1", []))) is None
    assert network.check_networks(_spec()) is None


@pytest.mark.parametrize(("networks", "field", "accepted"), [
    ([("shop default", [])], "spec.networks[0].name 'shop default'", network.NAME_RULE),
    ([("", [])], "spec.networks[0].name ''", network.NAME_RULE),
    ([("-shop", [])], "spec.networks[0].name '-shop'", network.NAME_RULE),
    ([("a" * 64, [])], "spec.networks[0].name", network.NAME_RULE),
    ([("ok", []), ("ok", [])], "spec.networks[1].name 'ok'", "attached to it twice"),
    ([("ok", ["fine", "not fine"])], "spec.networks[0].aliases: 'not fine'", network.NAME_RULE),
])
def test_bad_networks_are_named_with_their_field(
    networks: list[tuple[str, list[str]]], field: str, accepted: str,
) -> None:
    problem = network.check_networks(_spec(*networks))
    assert problem is not None
    assert problem.startswith(field)
    assert accepted in problem
