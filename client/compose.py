"""Compose files -> ServiceSpecs: the subset of the Compose format that makes sense on a cluster.

`load_stack(text)` returns one ServiceSpec per entry of `services:`, in file order, or raises
SpecError for the first problem, naming the source, the service, the key path and what is accepted:
    stack.yml: service 'web': deploy.replicas: expected a non-negative integer, got 'three'

Accepted: top-level services (required), name, version (ignored), x-* (ignored); per service image,
command, entrypoint, environment, labels, init, ports, stop_grace_period, healthcheck {test,
disable, interval, timeout, retries, start_period, start_interval} and deploy {mode, replicas,
labels, resources {reservations, limits} {cpus, memory}, placement {constraints}, restart_policy
{condition, delay, max_attempts, window}, update_config and rollback_config {parallelism, delay,
failure_action, monitor, max_failure_ratio, order}}. x-* keys are ignored in every mapping but
six, read directly under a service and an error anywhere else: `x-podium-probe`, the check the
agent itself runs (spec.probe); `x-podium-fence`, a duration after which an agent that lost the
manager stops the service's tasks (spec.fence_after); `x-podium-routing` {balance:
least-connections | round-robin, proxy_protocol: bool}, how the mesh spreads connections
(spec.routing); `x-podium-canary` {count, auto_promote_after}, the tasks of a new version that
start beside the old ones before the rest is updated (spec.canary); `x-podium-healthy-deadline`,
how long a new task may take to become healthy before an update counts it as failed;
`x-podium-autoscale` {min, max, cpu, memory, requests_per_second, connections, tolerance,
scale_down_window, max_step_up, max_step_down}, the replica count following the load
(spec.autoscale; `deploy.replicas` left out is then `min`). The container options (user,
working_dir, hostname, cap_add, cap_drop, sysctls, ulimits, stop_signal, tty, stdin_open,
extra_hosts, dns, dns_search, dns_opt, shm_size, read_only, logging, expose, privileged,
security_opt, group_add, pids_limit), restart, env_file, depends_on and profiles are read by
_compose_options, which also ignores, with one warning line per key per service, the keys that
mean nothing on a cluster (container_name, build when image is given, links, ...) and refuses
build without image and network_mode. The engine tuning keys (devices, pid, ipc, cpu_shares,
memswap_limit, blkio_config, ...), the short forms cpus, mem_limit, mem_reservation, cpu_quota and
scale, deploy.endpoint_mode and the rest of the Compose spec's keys are read, warned about or
refused (volumes_from, extends) by _compose_engine; top-level include is refused and models
ignored with a warning. A key outside the Compose spec is an error, never dropped: a dropped
volume or network would deploy something else than what the file says. `read_stack` returns the
services with those warnings; a service whose `profiles` were not asked for is left out, with a
warning.
healthcheck, x-podium-probe, deploy.restart_policy, deploy.update_config, deploy.rollback_config
and the last three extensions are read by _compose_checks, whose docstring has their rules; every
spec gets both update configs, the file's fields over Podium's defaults.

With a stack name (the `stack` argument, else top-level `name:`), services are named STACK_KEY with
spec.stack = STACK, as `docker stack deploy` does. Without one, services keep their keys as names,
and the stack is named after the file's folder (`fallback_stack`): spec.stack, and the full names
of its networks (FOLDER_default), volumes and secrets, so that those are its own. Networks are
read by _compose_networks; volumes (top-level and per service) and tmpfs by
_compose_volumes. Scalars are read as Compose reads them (22:22 is
a string, yes/no are not booleans). There is no ${VAR} interpolation, and a variable given without
a value ("KEY", "KEY:") is set to "".
"""

from __future__ import annotations

import contextlib
import ipaddress
import pathlib
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import yaml

from podium.rules.constraints import FORM as CONSTRAINT_FORM
from podium.rules.constraints import parse_constraint
from podium.rules.names import MAX_LENGTH as MAX_NAME
from podium.rules.names import RULE as NAME_RULE
from podium.rules.names import is_valid_name
from podium.rules.routing import BALANCE
from podium.v1 import objects

if TYPE_CHECKING:  # imported at run time where used: they build on this module
    from podium.client._compose_secrets import Declared
    from podium.client._compose_volumes import Volume

__all__ = ["SpecError", "Stack", "default_stack_name", "load_stack", "parse_bytes",
           "parse_duration", "read_stack"]


class SpecError(ValueError):
    """The file is not a valid Podium stack; the message says where and what is accepted."""


# PyYAML reads YAML 1.1: unquoted 22:22 is the integer 1342 (base 60), yes/no/on/off are booleans,
# 0755 is octal, 2024-01-01 a date, and a repeated key replaces the first (a service vanishes). As
# Compose does, this SafeLoader reads booleans and integers as YAML 1.2 and refuses repeated keys.
_YAML12 = {"bool": "^(?:true|True|TRUE|false|False|FALSE)$", "int": "^[-+]?(?:0|[1-9][0-9]*)$"}


class _Loader(yaml.SafeLoader):
    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers
                if tag.rsplit(":", 1)[1] not in (*_YAML12, "timestamp", "value")]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }  # fmt: skip

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        # Build every value before its parent is handed on, so that construct_object below sees
        # every error; a document that contains itself is then refused, as Compose refuses it.
        self.deep_construct = True

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ArithmeticError, AttributeError, LookupError, TypeError, ValueError):
            # PyYAML's own constructors fail so on explicit tags with bad values (!!int "",
            # !!timestamp x, !!set [1]) and on keys that are lists or mappings.
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            kind = "sequence" if isinstance(node, yaml.SequenceNode) else "mapping"
            problem = f"cannot read this {kind} as {tag}"
            if isinstance(node, yaml.ScalarNode):
                problem = f"not a valid {tag}: {_show(node.value)}"
            if isinstance(node, yaml.MappingNode) and any(
                not isinstance(key, yaml.ScalarNode) for key, _ in node.value
            ):
                problem += ": a key is a list or a mapping"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from None

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[tuple[str, str]] = set()
        for key, _ in node.value:  # the file's own keys: merged (<<) ones may be overridden
            if isinstance(key, yaml.ScalarNode) and (key.tag, key.value) in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key.value!r} is given twice", key.start_mark
                )
            seen.add((key.tag, key.value))
        return super().construct_mapping(node, deep)


for _name, _pattern in _YAML12.items():  # None: tried for any first character
    _Loader.add_implicit_resolver(f"tag:yaml.org,2002:{_name}", re.compile(_pattern), None)


@dataclass(frozen=True, slots=True)
class _At:
    service: str  # where a value sits, for messages: service 'web': deploy.resources.limits.cpus
    path: str = ""

    def __str__(self) -> str:
        return f"service {self.service!r}" + (f": {self.path}" if self.path else "")

    def sub(self, key: str | int) -> _At:
        path = f"{self.path}[{key}]" if isinstance(key, int) else f"{self.path}.{key}".lstrip(".")
        return _At(self.service, path)

    def error(self, expected: str, got: object) -> SpecError:
        return SpecError(f"{self}: expected {expected}, got {_show(got)}")


def _show(value: object) -> str:
    return text if len(text := repr(value)) <= 60 else text[:57] + "..."


_UPDATE_CONFIG = ("delay", "failure_action", "max_failure_ratio", "monitor", "order", "parallelism")
_SUPPORTED = {
    "": ("blkio_config", "cap_add", "cap_drop", "cgroup_parent", "command", "configs",
         "cpu_period", "cpu_quota", "cpu_shares", "cpus", "cpuset", "depends_on", "deploy",
         "device_cgroup_rules", "devices", "dns", "dns_opt", "dns_search", "domainname",
         "entrypoint", "env_file", "environment", "expose", "extra_hosts", "group_add",
         "healthcheck", "hostname", "image", "init", "ipc", "label_file", "labels", "logging",
         "mem_limit", "mem_reservation", "memswap_limit", "networks", "oom_kill_disable",
         "oom_score_adj", "pid", "pids_limit", "ports", "privileged", "profiles", "read_only",
         "restart", "runtime", "scale", "secrets", "security_opt", "shm_size", "stdin_open",
         "stop_grace_period", "stop_signal", "storage_opt", "sysctls", "tmpfs", "tty", "ulimits",
         "user", "userns_mode", "volumes", "working_dir", "x-podium-autoscale",
         "x-podium-canary", "x-podium-fence", "x-podium-healthy-deadline", "x-podium-probe",
         "x-podium-routing"),
    "logging": ("driver", "options"),
    "ulimits.*": ("hard", "soft"),
    "env_file[]": ("path", "required"),
    "depends_on.*": ("condition", "required", "restart"),
    "deploy": ("endpoint_mode", "labels", "mode", "placement", "replicas", "resources",
               "restart_policy", "rollback_config", "update_config"),
    "deploy.update_config": _UPDATE_CONFIG,
    "deploy.rollback_config": _UPDATE_CONFIG,
    "deploy.restart_policy": ("condition", "delay", "max_attempts", "window"),
    "deploy.resources": ("limits", "reservations"),
    "deploy.resources.limits": ("cpus", "memory", "pids"),
    "deploy.resources.reservations": ("cpus", "devices", "generic_resources", "memory"),
    "deploy.placement": ("constraints", "max_replicas_per_node", "preferences"),
    "devices[]": ("permissions", "source", "target"),
    "blkio_config": ("device_read_bps", "device_read_iops", "device_write_bps",
                     "device_write_iops", "weight", "weight_device"),
    "ports[]": ("host_ip", "mode", "protocol", "published", "target"),
    "healthcheck": ("disable", "interval", "retries", "start_interval", "start_period", "test",
                    "timeout"),
    "x-podium-probe": ("http", "interval", "retries", "start_interval", "start_period", "tcp",
                       "timeout"),
    "x-podium-probe.http": ("path", "port", "status"),
    "x-podium-probe.tcp": ("port",),
    "x-podium-routing": ("balance", "proxy_protocol"),
    "x-podium-canary": ("auto_promote_after", "count"),
    "x-podium-autoscale": ("connections", "cpu", "max", "max_step_down", "max_step_up", "memory",
                           "min", "requests_per_second", "scale_down_window", "tolerance"),
}  # fmt: skip
_PROBE_KEY = "x-podium-probe"
_FENCE_KEY = "x-podium-fence"
_ROUTING_KEY = "x-podium-routing"
_CANARY_KEY = "x-podium-canary"
_DEADLINE_KEY = "x-podium-healthy-deadline"
_AUTOSCALE_KEY = "x-podium-autoscale"
# The extension keys Podium reads, directly under a service.
_PODIUM_KEYS = (_PROBE_KEY, _FENCE_KEY, _ROUTING_KEY, _CANARY_KEY, _DEADLINE_KEY, _AUTOSCALE_KEY)
# Service keys read elsewhere than _SUPPORTED says: ignored with a warning (container_name, ...,
# and build when image is given), or refused with a reason (build alone, network_mode,
# volumes_from, extends), by _compose_options and _compose_engine. Their IGNORED are not
# imported here: they import this module.
_WARNED = ("annotations", "attach", "build", "cgroup", "container_name", "cpu_count",
           "cpu_percent", "cpu_rt_period", "cpu_rt_runtime", "credential_spec", "develop",
           "extends", "external_links", "gpus", "isolation", "links", "mac_address", "models",
           "mem_swappiness", "network_mode", "platform", "post_start", "pre_stop", "provider",
           "pull_policy", "pull_refresh_after", "use_api_socket", "uts", "volumes_from")


def _mapping(value: object, at: _At, table: str) -> dict[str, object]:
    """value as a mapping whose keys are all in _SUPPORTED[table] (or x-* extensions)."""
    if not isinstance(value, dict):
        raise at.error("a mapping", value)
    for key in value:
        if not isinstance(key, str):
            raise at.error("string keys", key)
        if key in _SUPPORTED[table] or (key.startswith("x-") and key not in _PODIUM_KEYS):
            continue
        if key in _PODIUM_KEYS:  # misplaced: ignoring it would deploy something else
            raise SpecError(f"{at.sub(key)}: only recognized directly under a service")
        if table == "" and key in _WARNED:
            continue
        raise SpecError(
            f"service {at.service!r}: key {at.sub(key).path!r} is not supported by Podium"
            f" (supported: {', '.join(_SUPPORTED[table])})"
        )
    return value


_DURATION_PART = r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)"
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1, "m": 60,
                   "h": 3600}  # fmt: skip
_MAX_SECONDS = 315_576_000_000  # the range of google.protobuf.Duration (10,000 years)


def parse_duration(value: object, *, where: str) -> float:
    """Seconds in a Compose duration: "10s", "1m30s", "1.5h", "500ms", "2us", or seconds."""
    expected = "a duration such as '10s', '1m30s' or '500ms', or a number of seconds >= 0"
    seconds = -1.0
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and re.fullmatch(f"0|(?:{_DURATION_PART})+", value):
        parts = re.findall(_DURATION_PART, value)
        seconds = sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)
    if not 0 <= seconds <= _MAX_SECONDS:  # also rejects nan
        raise SpecError(f"{where}: expected {expected}, got {_show(value)}")
    return seconds


def _nanos(value: object, at: _At, *, positive: bool = False) -> int:
    """A Compose duration in nanoseconds, as google.protobuf.Duration.FromNanoseconds takes it."""
    nanos = round(parse_duration(value, where=str(at)) * 1e9)
    if positive and nanos == 0:
        raise at.error("a duration greater than 0", value)
    return nanos


def _count(value: object, at: _At, *, positive: bool = False) -> int:
    """A uint32 count: replicas, retries, max_attempts."""
    if isinstance(value, bool) or not isinstance(value, int) or not positive <= value < 2**32:
        raise at.error("a positive integer" if positive else "a non-negative integer", value)
    return value


_BYTES = re.compile(r"([0-9]+(?:\.[0-9]+)?) ?([kmgtp])?i?b?", re.IGNORECASE)
_INT64_MAX = 2**63 - 1


def parse_bytes(value: object, *, where: str) -> int:
    """Bytes in a Compose size: "512m", "1g", "1.5GiB", "100kb", "2048" or an int (binary units)."""
    size = -1
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (match := _BYTES.fullmatch(value.strip())):
        number, unit = match.groups()
        size = int(Decimal(number) * 1024 ** ("kmgtp".index(unit.lower()) + 1 if unit else 0))
    if not 0 <= size <= _INT64_MAX:
        expected = "a size such as '512m', '1g' or '1.5GiB' (b, k, m, g, t, p), or bytes >= 0"
        raise SpecError(f"{where}: expected {expected}, got {_show(value)}")
    return size


def _nano_cpus(value: object, at: _At) -> int:
    """cpus 0.5 or "0.5" -> 500_000_000, exactly (in floats, 0.3 * 1e9 is 299999999.99999994)."""
    nano = Decimal(0)
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        with contextlib.suppress(InvalidOperation):
            nano = Decimal(repr(value) if isinstance(value, float) else value) * 10**9
    if not nano.is_finite() or not 1 <= nano <= _INT64_MAX:
        raise at.error("a positive number of cpus such as 0.5 or '2'", value)
    return int(nano)


def _text(value: object, at: _At) -> str:
    """A scalar as Compose renders it into an environment or label value."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):  # like Go's fmt.Sprint: 1.0 -> "1"
        return str(int(value)) if value.is_integer() and abs(value) < 1e21 else repr(value)
    if isinstance(value, int | str):
        return str(value)
    raise at.error("a string, number, boolean or null", value)


def _string_map(value: object, at: _At) -> dict[str, str]:
    """environment / labels: a mapping, or a list of "KEY=VALUE" (or "KEY", meaning "")."""
    if isinstance(value, list):
        for i, entry in enumerate(value):
            if not isinstance(entry, str) or entry.startswith("=") or not entry:
                raise at.sub(i).error("a 'KEY=VALUE' or 'KEY' string", entry)
        value = {key: text for key, _, text in (entry.partition("=") for entry in value)}
    if not isinstance(value, dict):
        raise at.error("a mapping or a list of 'KEY=VALUE' strings", value)
    for key in value:
        if not isinstance(key, str) or not key:
            raise at.error("non-empty string keys", key)
    return {key: _text(item, at.sub(key)) for key, item in value.items()}


def _words(value: object, at: _At) -> list[str]:
    """command / entrypoint: a string split as a shell would, or a list of strings."""
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as exc:
            raise SpecError(f"{at}: cannot split {_show(value)} into words: {exc}") from None
    if isinstance(value, list) and all(isinstance(word, str) for word in value):
        return list(value)
    raise at.error("a string or a list of strings", value)


def _choice(value: object, choices: Iterable[str], at: _At) -> str:
    if not isinstance(value, str) or value not in choices:
        raise at.error(" or ".join(repr(c) for c in choices), value)
    return value


_SHORT_PORT = "[[HOST_IP:]PUBLISHED:]TARGET[/PROTOCOL], e.g. '8080:80' or '127.0.0.1:53:53/udp'"
_PROTOCOLS = {"tcp": objects.PortConfig.PROTOCOL_TCP, "udp": objects.PortConfig.PROTOCOL_UDP}
_MODES = {"ingress": objects.PortConfig.PUBLISH_MODE_INGRESS,
          "host": objects.PortConfig.PUBLISH_MODE_HOST}  # fmt: skip


def _port(value: object, at: _At) -> int:
    port = int(value) if isinstance(value, str) and value.isascii() and value.isdigit() else value
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise at.error("a port number from 1 to 65535", value)
    return port


def _port_range(text: str, at: _At) -> range:
    first, dash, last = text.partition("-")
    ports = range(_port(first, at), (_port(last, at) if dash else _port(first, at)) + 1)
    if not ports:
        raise at.error("a port range LOW-HIGH", text)
    return ports


def _host_ip(value: object, at: _At) -> str:
    try:
        return str(ipaddress.ip_address(value)) if isinstance(value, str) and value else ""
    except ValueError:
        raise at.error("an IP address", value) from None


def _short_ports(item: str | int, at: _At) -> list[objects.PortConfig]:
    """Short syntax: "80", "8080:80", "127.0.0.1:53:53/udp", "[::1]:80:80"; ranges expand."""
    spec, _, protocol = str(item).strip().partition("/")
    if spec.startswith("["):  # bracketed IPv6 host address
        host_ip, sep, rest = spec[1:].partition("]:")
        parts = [host_ip, *rest.split(":")] if sep and rest.count(":") == 1 else []
    else:
        parts = spec.rsplit(":", 2)
    if not parts or not parts[-1]:
        raise at.error(_SHORT_PORT, item)
    host_ip = _host_ip(parts[0], at) if len(parts) == 3 else ""
    targets = _port_range(parts[-1], at)
    published = _port_range(parts[-2], at) if len(parts) >= 2 and parts[-2] else None
    if published is not None and len(published) != len(targets):
        raise at.error("published and target ranges of the same length", item)
    proto = _PROTOCOLS[_choice(protocol or "tcp", _PROTOCOLS, at)]
    sources = published if published is not None else [0] * len(targets)
    return [  # mode: PUBLISH_MODE_INGRESS, the default
        objects.PortConfig(protocol=proto, target_port=dst, published_port=src, host_ip=host_ip)
        for src, dst in zip(sources, targets, strict=True)
    ]


def _long_port(item: object, at: _At) -> objects.PortConfig:
    data = _mapping(item, at, "ports[]")
    if "target" not in data:
        raise SpecError(f"{at}: 'target' is required in the long port syntax")
    return objects.PortConfig(
        target_port=_port(data["target"], at.sub("target")),
        published_port=_port(data["published"], at.sub("published")) if "published" in data else 0,
        protocol=_PROTOCOLS[_choice(data.get("protocol", "tcp"), _PROTOCOLS, at.sub("protocol"))],
        mode=_MODES[_choice(data.get("mode", "ingress"), _MODES, at.sub("mode"))],
        host_ip=_host_ip(data.get("host_ip", ""), at.sub("host_ip")),
    )


def _ports(value: object, at: _At) -> list[objects.PortConfig]:
    if not isinstance(value, list):
        raise at.error("a list of ports", value)
    ports: list[objects.PortConfig] = []
    for i, item in enumerate(value):
        if isinstance(item, dict):
            ports.append(_long_port(item, at.sub(i)))
        elif isinstance(item, str | int) and not isinstance(item, bool):
            ports.extend(_short_ports(item, at.sub(i)))
        else:
            raise at.sub(i).error(f"{_SHORT_PORT}, or a mapping with target", item)
    return ports


_SERVICE_MODES = {"replicated": objects.ServiceSpec.MODE_REPLICATED,
                  "global": objects.ServiceSpec.MODE_GLOBAL}  # fmt: skip


def _deploy(value: object, spec: objects.ServiceSpec, at: _At) -> None:
    deploy = _mapping(value, at, "deploy")
    mode = _choice(deploy.get("mode", "replicated"), _SERVICE_MODES, at.sub("mode"))
    if mode == "global" and "replicas" in deploy:
        raise SpecError(f"{at.sub('replicas')}: not allowed with mode: global")
    replicas = _count(deploy.get("replicas", 0 if mode == "global" else 1), at.sub("replicas"))
    spec.mode, spec.replicas = _SERVICE_MODES[mode], replicas
    if "labels" in deploy:
        spec.labels.update(_string_map(deploy["labels"], at.sub("labels")))
    resources = _mapping(deploy.get("resources", {}), at.sub("resources"), "deploy.resources")
    for kind in ("reservations", "limits"):
        where = at.sub("resources").sub(kind)
        amounts = _mapping(resources.get(kind, {}), where, f"deploy.resources.{kind}")
        target: objects.Resources = getattr(spec.resources, kind)
        if "cpus" in amounts:
            target.nano_cpus = _nano_cpus(amounts["cpus"], where.sub("cpus"))
        if "memory" in amounts:
            target.memory_bytes = parse_bytes(amounts["memory"], where=str(where.sub("memory")))
    placement = _mapping(deploy.get("placement", {}), at.sub("placement"), "deploy.placement")
    constraints = placement.get("constraints", [])
    where = at.sub("placement").sub("constraints")
    if not isinstance(constraints, list):
        raise where.error("a list of constraints", constraints)
    for i, text in enumerate(constraints):
        try:
            if not isinstance(text, str):
                raise ValueError
            constraint = parse_constraint(text)
        except ValueError:
            raise where.sub(i).error(CONSTRAINT_FORM, text) from None
        spec.placement.constraints.append(str(constraint))


def _routing(value: object, at: _At) -> objects.Routing:
    data = _mapping(value, at, _ROUTING_KEY)
    routing = objects.Routing()
    if "balance" in data:
        routing.balance = BALANCE[_choice(data["balance"], tuple(BALANCE), at.sub("balance"))]
    if "proxy_protocol" in data:
        flag = data["proxy_protocol"]
        if not isinstance(flag, bool):
            raise at.sub("proxy_protocol").error("true or false", flag)
        routing.proxy_protocol = flag
    return routing


def _service(key: object, value: object, stack: str | None, context: _Context
             ) -> objects.ServiceSpec:
    # Imported here, not at the top: these modules build on this module's helpers.
    from podium.client._compose_checks import set_autoscale, set_checks, set_updates
    from podium.client._compose_engine import check_refused, set_engine_options
    from podium.client._compose_networks import set_networks
    from podium.client._compose_options import check_build, set_options
    from podium.client._compose_secrets import set_references
    from podium.client._compose_volumes import set_mounts

    at = _At(str(key))
    if not is_valid_name(key):
        raise SpecError(f"{at}: invalid service name: use {NAME_RULE}")
    name = f"{stack}_{key}" if stack is not None else key
    if not is_valid_name(name):
        raise SpecError(f"{at}: service name {name!r} is longer than {MAX_NAME} characters")
    data = _mapping(value, at, "")
    check_build(data, at)
    check_refused(data, at)
    image = data.get("image")
    if not isinstance(image, str) or not image.strip():
        raise at.sub("image").error("a non-empty image name (image is required)", image)
    spec = objects.ServiceSpec(name=name, stack=stack or context.scope)
    container = spec.container  # a reference: the constructor would have copied a ContainerSpec
    container.image = image.strip()
    container.command.extend(_words(data.get("command", []), at.sub("command")))
    container.entrypoint.extend(_words(data.get("entrypoint", []), at.sub("entrypoint")))
    container.env.update(_string_map(data.get("environment", {}), at.sub("environment")))
    container.labels.update(_string_map(data.get("labels", {}), at.sub("labels")))
    init = data.get("init", False)
    if not isinstance(init, bool):
        raise at.sub("init").error("true or false", init)
    container.init = init
    if "stop_grace_period" in data:
        grace = _nanos(data["stop_grace_period"], at.sub("stop_grace_period"))
        container.stop_grace_period.FromNanoseconds(grace)
    if _FENCE_KEY in data:
        fence = _nanos(data[_FENCE_KEY], at.sub(_FENCE_KEY), positive=True)
        spec.fence_after.FromNanoseconds(fence)
    if _ROUTING_KEY in data:
        spec.routing.CopyFrom(_routing(data[_ROUTING_KEY], at.sub(_ROUTING_KEY)))
    spec.ports.extend(_ports(data.get("ports", []), at.sub("ports")))
    set_networks(data, spec, at, context.networks, str(key), context.warnings)
    set_mounts(data, spec, at, context.volumes, context.directory, context.warnings)
    _deploy(data.get("deploy", {}), spec, at.sub("deploy"))
    # After _deploy, whose resources and replicas win over cpus, mem_limit and scale.
    context.warnings.extend(set_engine_options(data, spec, at, context.directory))
    # Before set_checks: deploy.restart_policy, read there, wins over `restart`.
    context.warnings.extend(set_options(data, spec, at.service, context.directory, context.names))
    set_checks(data, spec, at.service)
    set_autoscale(data, spec, at.service)  # before set_updates: it may set spec.replicas
    set_updates(data, spec, at.service)
    set_references(data, spec, at, context.files)
    return spec


@dataclass(slots=True)
class _Context:
    directory: pathlib.Path  # env_file paths are relative to it
    names: frozenset[str]  # the file's service keys, for depends_on
    warnings: list[str]
    # The stack's scope: its name, else the file's folder's (what its networks, volumes and
    # secrets are named after), else "".
    scope: str = ""
    networks: dict[str, str] = field(default_factory=dict)  # Compose key -> full name
    volumes: dict[str, Volume] = field(default_factory=dict)  # Compose key -> top-level volume
    # The top-level secrets: and configs: by (kind, key) (podium.client._compose_secrets).
    files: dict[tuple[str, str], Declared] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Stack:
    """A parsed Compose file: its services in file order (those of profiles not asked for
    left out) and the warnings to show once, one line per ignored key per service."""

    services: list[objects.ServiceSpec]
    warnings: list[str]
    # The secrets and configs the services use: stored at deploy, before the services.
    files: list[Declared] = field(default_factory=list)


_TOP_LEVEL = ("configs", "models", "name", "networks", "secrets", "services", "version",
              "volumes")


def _load(text: str, stack: str | None, directory: pathlib.Path,
          profiles: Iterable[str], fallback: str | None) -> Stack:
    try:
        loader = _Loader(text)  # a SafeLoader: builds no Python objects
        try:
            document = loader.get_single_data()
        except RecursionError:  # PyYAML composes nested collections recursively
            stop = loader.get_mark()
            raise SpecError(f"line {stop.line + 1}, column {stop.column + 1}: invalid YAML: "
                            "lists or mappings nested too deeply") from None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or exc
        if isinstance(exc, yaml.reader.ReaderError):  # a character YAML refuses: no mark
            line_start = text.rfind("\n", 0, exc.position) + 1
            line, column = text.count("\n", 0, line_start) + 1, exc.position - line_start + 1
            where = f"line {line}, column {column}: "
            character = chr(exc.character) if isinstance(exc.character, int) else exc.character
            problem = f"character {character!r}: {exc.reason}"
        raise SpecError(f"{where}invalid YAML: {problem}") from None
    if not isinstance(document, dict):
        raise SpecError(f"expected a mapping with 'services' at the top, got {_show(document)}")
    if "include" in document:
        raise SpecError("top-level key 'include': Podium reads one file: merge the files first "
                        "with `docker compose config > merged.yml` and deploy that")
    warnings = []
    if "models" in document:
        warnings.append("ignoring top-level models: AI models served by the local Docker model "
                        "runner are not available on a cluster")
    for key in document:
        if key in _PODIUM_KEYS:
            raise SpecError(f"top-level key {key!r}: only recognized directly under a service")
        if key not in _TOP_LEVEL and not str(key).startswith("x-"):
            supported = f"(supported: {', '.join(_TOP_LEVEL)})"
            raise SpecError(f"top-level key {key!r} is not supported by Podium {supported}")
    if stack is None:
        stack = document.get("name")
    for candidate in (stack, fallback):
        if candidate is not None and not is_valid_name(candidate):
            raise SpecError(f"invalid stack name {_show(candidate)}: use {NAME_RULE}")
    scope = stack or fallback or ""
    services = document.get("services")
    if not isinstance(services, dict) or not services:
        raise SpecError(f"services: expected a non-empty mapping, got {_show(services)}")
    from podium.client._compose_networks import stack_networks
    from podium.client._compose_options import profiles as service_profiles
    from podium.client._compose_secrets import declarations, used
    from podium.client._compose_volumes import stack_volumes

    context = _Context(directory, frozenset(str(key) for key in services), warnings, scope)
    context.networks = stack_networks(document, scope, context.warnings)
    context.volumes = stack_volumes(document, scope)
    context.files = declarations(document, scope, directory, context.warnings)
    wanted, specs = set(profiles), []
    for key, value in services.items():
        own = service_profiles(value, _At(str(key))) if isinstance(value, dict) else []
        if own and not wanted.intersection(own):
            context.warnings.append(
                f"service {str(key)!r}: skipped: its profiles ({', '.join(own)}) were not asked "
                f"for (podium deploy --profile {own[0]})"
            )
            continue
        specs.append(_service(key, value, stack, context))
    if not specs:
        raise SpecError("no service to deploy: every service has a profile not asked for")
    return Stack(specs, context.warnings, used(context.files, specs))


def default_stack_name(path: pathlib.Path) -> str | None:
    """The stack name Compose gives a project without `name:` or -p: the name of the file's
    folder, lowercased, without the characters outside [a-z0-9_-] (None if nothing is left)."""
    name = re.sub(r"[^a-z0-9_-]", "", path.resolve().parent.name.lower())
    name = name.lstrip("_-")  # a stack name starts with a letter or digit
    return name[:MAX_NAME] if name else None


def read_stack(
    text: str,
    *,
    source: str = "<spec>",
    stack: str | None = None,
    directory: pathlib.Path | None = None,
    profiles: Iterable[str] = (),
    fallback_stack: str | None = None,
) -> Stack:
    """The services of a Compose file and its warnings; raises SpecError("SOURCE: ...").
    The stack name is, as Compose finds a project's: `stack` (--stack), else the file's
    `name:` (both prefix the services' names), else `fallback_stack` (default_stack_name of the
    file: it names the stack's networks, volumes and secrets only), else none. `directory` is
    where env_file paths start (default: the working directory); `profiles` are the ones
    asked for."""
    try:
        return _load(text, stack, directory or pathlib.Path("."), profiles, fallback_stack)
    except SpecError as exc:
        raise SpecError(f"{source}: {exc}") from None


def load_stack(
    text: str, *, source: str = "<spec>", stack: str | None = None
) -> list[objects.ServiceSpec]:
    """The services of a Compose file, in file order; raises SpecError("SOURCE: ...")."""
    return read_stack(text, source=source, stack=stack).services
