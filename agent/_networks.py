"""The engine networks behind Podium's networks on one node (pure: request bodies and what
inspected networks say).

A Podium network ("shop_default") is a bridge network on each node that runs a task attached to it,
named podium_shop_default.NODEID and labelled with the Podium name and the node (two agents sharing
an engine each make their own). Nothing crosses between nodes on it: services reach each other
through the agent's virtual IPs (podium.agent.internal), and the bridge only tells the agent which
network a connection comes from (its source address).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from podium.agent.executor import LABEL_NODE
from podium.rules.network import engine_name

__all__ = ["LABEL_NETWORK", "create_body", "engine_name", "first_network_config", "members"]

LABEL_NETWORK = "io.podium.network"


def create_body(network: str, node_id: str = "") -> dict[str, Any]:
    """The create-network body for the Podium network `network` on the node `node_id`."""
    labels = {LABEL_NETWORK: network}
    if node_id:
        labels[LABEL_NODE] = node_id
    return {"Name": engine_name(network, node_id), "Driver": "bridge", "CheckDuplicate": True,
            "Labels": labels}


def members(inspected: Iterable[Mapping[str, Any]]) -> dict[str, frozenset[str]]:
    """Container address -> the Podium networks its container is on (every address of a
    container on several maps to all of them: its traffic leaves from one of them only)."""
    networks_of: dict[str, set[str]] = {}  # container id -> Podium networks
    addresses_of: dict[str, set[str]] = {}  # container id -> its addresses
    for network in inspected:
        name = str((network.get("Labels") or {}).get(LABEL_NETWORK) or "")
        if not name:
            continue
        for container_id, endpoint in (network.get("Containers") or {}).items():
            networks_of.setdefault(container_id, set()).add(name)
            address = str(endpoint.get("IPv4Address") or "").partition("/")[0]
            if address:
                addresses_of.setdefault(container_id, set()).add(address)
    return {address: frozenset(networks_of[cid])
            for cid, addresses in addresses_of.items() for address in addresses}


def first_network_config(network: str, resolver: str,
                         dns: Iterable[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """HostConfig and create-body additions for a container joining the engine network
    `network` (a name or id) at create (its further ones are connected before start), with the
    agent's name server first (then the spec's own, which it falls back to)."""
    host: dict[str, Any] = {"NetworkMode": network}
    if resolver:
        host["Dns"] = [resolver, *[d for d in dns if d != resolver]]
    body: dict[str, Any] = {"NetworkingConfig": {"EndpointsConfig": {network: {}}}}
    return host, body


def is_already_connected(message: str) -> bool:
    """Whether a connect error says the container is on the network already."""
    return "already exists" in message or "already attached" in message
