"""Compose networks: the top-level `networks:` and each service's `networks:`.

`stack_networks(document, scope, warnings)` reads the top level: Compose key -> the network's
full name, which is `SCOPE_KEY` (the stack's own network; `KEY` without a stack), or the `name:`
given, or for `external: true` the name as written (a network of another stack, joined on
purpose). The network `default` always exists. Keys that configure the engine's network
(driver, driver_opts, ipam, ...) are ignored with a warning: a Podium network is the agent's own
on every node (see docs/architecture.md, "Internal routing").

`set_networks(data, spec, at, networks, key)` attaches the service: to `default` when it names
none, else to each network it lists (a list of keys, or a mapping KEY: {aliases: [...]} or
KEY: null). On each, the service answers to its full name, its Compose key and its aliases.
An undeclared network is an error naming the service and the network.
"""

from __future__ import annotations

from podium.client.compose import SpecError, _At, _show
from podium.rules.network import NAME_RULE, is_valid_name
from podium.v1 import objects

DEFAULT = "default"
# Top-level keys read (name, external) or ignored with a warning saying why.
_READ = ("external", "name")
_IGNORED_TOP = {
    "driver": "every Podium network is the agent's own bridge on each node, joined through "
              "the nodes' virtual IPs",
    "driver_opts": "every Podium network is the agent's own bridge on each node",
    "ipam": "the engine picks each node's subnet; services are reached at virtual IPs",
    "attachable": "only a stack's services join its networks",
    "enable_ipv6": "internal routing is IPv4",
    "internal": "a Podium network isolates stacks from each other; its containers can still "
                "reach outside",
    "labels": "Podium networks carry no labels",
}
# Per-service attachment keys ignored with a warning.
_IGNORED_ATTACHMENT = {
    "ipv4_address": "services are reached at their virtual IP, which Podium chooses",
    "ipv6_address": "internal routing is IPv4",
    "link_local_ips": "services are reached at their virtual IP",
    "mac_address": "each node's engine chooses container addresses",
    "priority": "a service reaches every network it is on",
    "gw_priority": "a service reaches every network it is on",
    "driver_opts": "every Podium network is the agent's own bridge on each node",
}


def stack_networks(document: dict[object, object], scope: str,
                   warnings: list[str]) -> dict[str, str]:
    """Compose network key -> full name, for the file's top-level `networks:`."""
    value = document.get("networks") or {}
    if not isinstance(value, dict):
        raise SpecError(f"networks: expected a mapping of network names, got {_show(value)}")
    table = {DEFAULT: _scoped(scope, DEFAULT)}
    for key, config in value.items():
        where = f"networks.{key}"
        if not isinstance(key, str) or not is_valid_name(key):
            raise SpecError(f"networks: invalid network name {_show(key)}: use {NAME_RULE}")
        config = config or {}
        if not isinstance(config, dict):
            raise SpecError(f"{where}: expected a mapping (or nothing), got {_show(config)}")
        for option in config:
            if option in _IGNORED_TOP:
                warnings.append(f"network {key!r}: ignoring {option}: {_IGNORED_TOP[option]}")
            elif option not in _READ and not str(option).startswith("x-"):
                raise SpecError(f"{where}: key {option!r} is not supported by Podium "
                                f"(supported: {', '.join(sorted([*_READ, *_IGNORED_TOP]))})")
        external = config.get("external", False)
        if not isinstance(external, bool):
            raise SpecError(f"{where}.external: expected true or false, got {_show(external)}")
        name = config.get("name")
        if name is not None and not (isinstance(name, str) and is_valid_name(name)):
            raise SpecError(f"{where}.name: invalid network name {_show(name)}: use {NAME_RULE}")
        table[key] = name or (key if external else _scoped(scope, key))
    return table


def _scoped(scope: str, key: str) -> str:
    full = f"{scope}_{key}" if scope else key
    if not is_valid_name(full):
        raise SpecError(f"network {key!r}: its full name {full!r} is longer than 63 characters: "
                        "use a shorter stack name")
    return full


def set_networks(data: dict[str, object], spec: objects.ServiceSpec, at: _At,
                 networks: dict[str, str], key: str, warnings: list[str]) -> None:
    """Attaches the service to its networks (the default one when it names none)."""
    value = data.get("networks")
    where = at.sub("networks")
    if value is None:
        value = [DEFAULT]
    if isinstance(value, list):
        for i, item in enumerate(value):
            if not isinstance(item, str):  # a mapping here would not even be a dict key
                raise where.sub(i).error("a network name", item)
        value = dict.fromkeys(value)
    if not isinstance(value, dict) or not value:
        raise where.error("a list of networks or a mapping NETWORK: {aliases: [...]}", value)
    for name, config in value.items():
        if not isinstance(name, str) or name not in networks:
            declared = ", ".join(sorted(networks))
            raise SpecError(f"{where}: network {_show(name)} is not declared in the top-level "
                            f"`networks:` (declared: {declared}): add it there")
        config = config or {}
        if not isinstance(config, dict):
            raise where.sub(name).error("a mapping with aliases, or nothing", config)
        aliases = [key] if key != spec.name else []
        for option, setting in config.items():
            if option == "aliases":
                if not isinstance(setting, list) or not all(is_valid_name(a) for a in setting):
                    raise where.sub(name).sub("aliases").error(f"a list of names ({NAME_RULE})",
                                                               setting)
                aliases += [a for a in setting if a not in aliases and a != spec.name]
            elif option in _IGNORED_ATTACHMENT:
                warnings.append(f"{where.sub(name)}: ignoring {option}: "
                                f"{_IGNORED_ATTACHMENT[option]}")
            else:
                supported = ", ".join(sorted(["aliases", *_IGNORED_ATTACHMENT]))
                raise SpecError(f"{where.sub(name)}: key {option!r} is not supported by Podium "
                                f"(supported: {supported})")
        spec.networks.add(name=networks[name], aliases=aliases)
