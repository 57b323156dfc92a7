"""Internal networking: virtual IPs, the containers' name server, and which names a service
answers to on which network.

Every service gets a virtual IP from the manager's range when it is created and keeps it for
its life. The range's first address is the name server every agent runs for its containers
(`resolver_address`); virtual IPs are taken from the next one up (`allocate`). On a network it is
attached to, a service answers to its full name and to its aliases there (`names_on`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the daemons' argument parsing imports this module: no protobuf at run time
    from podium.v1 import objects

DEFAULT_RANGE = "10.96.0.0/16"
# A network or alias name: as a DNS label, plus '_' and '.' (stack names use '_').
NAME_RULE = "1-63 letters, digits, '_', '.' and '-', starting with a letter or digit"
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}")
# What the engine calls a network the agent made for a Podium network.
ENGINE_PREFIX = "podium_"


def parse_range(text: str) -> ipaddress.IPv4Network:
    """The range, or ValueError naming what is accepted."""
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise ValueError(f"virtual IP range {text!r}: expected an IPv4 network such as "
                         f"{DEFAULT_RANGE} ({exc})") from None
    if not isinstance(net, ipaddress.IPv4Network) or net.prefixlen > 28:
        raise ValueError(f"virtual IP range {text!r}: expected an IPv4 network of /28 or larger, "
                         f"such as {DEFAULT_RANGE}")
    return net


def resolver_address(text: str) -> str:
    """The name server's address: the range's first usable address."""
    return str(parse_range(text).network_address + 1)


def allocate(text: str, used: Iterable[str]) -> str:
    """The lowest free virtual IP of the range; ValueError when none is left."""
    net = parse_range(text)
    taken = set(used)
    first = int(net.network_address) + 2  # +1 is the name server
    last = int(net.broadcast_address) - 1
    for value in range(first, last + 1):
        address = str(ipaddress.IPv4Address(value))
        if address not in taken:
            return address
    raise ValueError(f"virtual IP range {text}: every address is in use "
                     f"({last - first + 1} services)")


def is_valid_name(name: object) -> bool:
    return isinstance(name, str) and bool(_NAME.fullmatch(name))


def names_on(spec: objects.ServiceSpec, network: str) -> list[str]:
    """The names the service answers to on `network` (none when not attached to it)."""
    for attachment in spec.networks:
        if attachment.name == network:
            return names(spec.name, attachment)
    return []


def names(service: str, attachment: objects.NetworkAttachment) -> list[str]:
    """The names the service called `service` answers to on the network of `attachment`."""
    return [service, *[a for a in attachment.aliases if a != service]]


def internal_ports(spec: objects.ServiceSpec) -> list[int]:
    """The TCP container ports served on the service's virtual IP: its ports' targets and
    the ports it exposes ("80", "80/tcp", "8000-8002"), in order."""
    from podium.v1 import objects

    ports = {p.target_port for p in spec.ports if p.protocol == objects.PortConfig.PROTOCOL_TCP}
    for entry in spec.container.expose:
        number, _, protocol = entry.partition("/")
        if protocol not in ("", "tcp"):
            continue
        low, _, high = number.partition("-")
        try:
            first, final = int(low), int(high or low)
        except ValueError:
            continue
        if 0 < first <= final < 65536 and final - first < 1024:
            ports.update(range(first, final + 1))
    return sorted(ports)


def check_networks(spec: objects.ServiceSpec) -> str | None:
    """What is wrong with the service's networks, naming the field; None when nothing."""
    seen: set[str] = set()
    for i, attachment in enumerate(spec.networks):
        field = f"spec.networks[{i}]"
        if not is_valid_name(attachment.name):
            return f"{field}.name {attachment.name!r}: expected {NAME_RULE}"
        if attachment.name in seen:
            return f"{field}.name {attachment.name!r}: the service is attached to it twice"
        seen.add(attachment.name)
        for alias in attachment.aliases:
            if not is_valid_name(alias):
                return f"{field}.aliases: {alias!r}: expected {NAME_RULE}"
    return None


def engine_name(network: str, node_id: str = "") -> str:
    """The engine network the node `node_id` makes for a Podium network (each node its own,
    also where two agents share an engine, so that they never race to make one)."""
    return ENGINE_PREFIX + network + (f".{node_id[:12]}" if node_id else "")
