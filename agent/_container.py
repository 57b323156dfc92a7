"""Pure translation between Podium tasks and Docker's API documents. No I/O.

- container_name(): the task's deterministic container name, so that creating twice finds the
  first container (409 Conflict) and a restarted agent adopts it.
- container_labels() / container_config(): the body of POST /containers/create for a task.
- container_state() / container_event(): the engine's inspect and event documents read back into
  the executor's types.

Policy encoded here: the agent restarts containers itself (restart policy "no"); the stop grace
is passed to stop(), not stored in the container; every spec port, ingress or host mode, is for
now published on the node by the engine; logs rotate at 3 x 10 MB.

Compose's container options (user ... pids_limit) map one to one onto the engine's keys, each key
set only when its field is: a spec without them gives the body it gave before they existed.
- stop_signal becomes Config.StopSignal, the signal `stop` sends first; the grace before SIGKILL
  stays the task's stop_grace_period, because stop() always passes it as the timeout, which the
  engine prefers over any StopTimeout.
- logging: json-file (the default driver) keeps the 3 x 10 MB rotation under the user's options,
  so naming the default driver never makes logs unbounded; another driver gets exactly the
  user's options.
- expose entries ("80", "80/udp", "8000-8010/tcp") join the published ports in ExposedPorts.
- A ulimit without a hard limit gets its soft one as hard (Compose's `nofile: 1024`).
- devices ... blkio_weight (apply_engine_tuning) become HostConfig's Devices ({PathOnHost,
  PathInContainer, CgroupPermissions}: the target defaults to the host path, the permissions to
  rwm), DeviceCgroupRules, PidMode, IpcMode, UsernsMode, CpuShares, CpusetCpus, OomScoreAdj,
  OomKillDisable, MemorySwap, Runtime, CgroupParent, StorageOpt, BlkioWeight, and
  Config.Domainname.
Mounts (add_mounts) become HostConfig.Mounts entries, the engine's own names for each field:
a named volume is created by the engine on first use with the mount's driver, options and
labels (it then keeps what it was created with); an empty volume source is an anonymous volume.
A bind that may create its host path becomes a HostConfig.Binds entry instead, because the
engine creates a missing Binds source itself on every API version (Mounts' CreateMountpoint
needs API 1.42). A bind whose source is missing is refused by the engine (400), which
bind_source_missing() recognises so the task fails saying which path is missing on which node.
A volume marked external (Mount.external) must exist already: external_volumes()
lists them for the executor to check, and the label is not passed on.
Invalid values raise ValueError naming the field (the executor reports it as a permanent error).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from podium.agent._networks import first_network_config
from podium.agent.executor import (
    ENGINE_ACTIONS,
    LABEL_NODE,
    LABEL_SERVICE,
    LABEL_SERVICE_NAME,
    LABEL_SLOT,
    LABEL_TASK,
    ContainerEvent,
    ContainerState,
)
from podium.rules.network import engine_name
from podium.v1 import objects

_UNSAFE_NAME_CHARS = re.compile(r"[^a-zA-Z0-9_.-]")
_PROTOCOLS = {objects.PortConfig.PROTOCOL_TCP: "tcp", objects.PortConfig.PROTOCOL_UDP: "udp"}
_PROTOCOLS_BY_NAME = {name: proto for proto, name in _PROTOCOLS.items()}
_DEFAULT_LOG_DRIVER = "json-file"
_LOG_ROTATION = {"max-size": "10m", "max-file": "3"}
_EXPOSE_RE = re.compile(r"^(\d+)(?:-(\d+))?(?:/(tcp|udp|sctp))?$", re.IGNORECASE)
# A range is expanded into one key per port: keep a typo from making a body of 65535 keys.
_EXPOSE_MAX_RANGE = 1024
# The engine's zero time.Time, reported for "never started" and "still running".
_ZERO_TIME_PREFIX = "0001-01-01"
_TIME_RE = re.compile(
    r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", re.IGNORECASE
)


def container_name(task: objects.Task, node_id: str) -> str:
    """`service.slot.task` for replicated tasks, `service.node.task` for global ones (slot 0).

    Sanitised to Docker's name charset [a-zA-Z0-9][a-zA-Z0-9_.-]+: other characters become "-".
    """
    middle = str(task.slot) if task.slot > 0 else node_id
    raw = f"{task.service_name}.{middle}.{task.id}"
    name = _UNSAFE_NAME_CHARS.sub("-", raw).lstrip("_.-")
    if len(name) < 2:
        # Cannot happen with real ids; keeps the engine from rejecting a degenerate name.
        name = "podium-" + name
    return name


def container_labels(task: objects.Task, node_id: str) -> dict[str, str]:
    """The user's container labels plus Podium's, which win over a user label of the same key."""
    labels = dict(task.spec.container.labels)
    labels.update(
        {
            LABEL_TASK: task.id,
            LABEL_SERVICE: task.service_id,
            LABEL_SERVICE_NAME: task.service_name,
            LABEL_NODE: node_id,
            LABEL_SLOT: str(task.slot),
        }
    )
    return labels


def port_key(target_port: int, protocol: objects.PortConfig.Protocol) -> str:
    return f"{target_port}/{_PROTOCOLS.get(protocol, 'tcp')}"


def container_config(task: objects.Task, node_id: str, resolver: str = "",
                     network_ids: Sequence[str] = ()) -> dict[str, Any]:
    """The create-container body (Config with HostConfig inside) for the task's spec. On
    networks, the container joins the first one (`network_ids`: the engine's ids of the
    spec's networks; their names without them) and asks `resolver`, the agent's name server,
    first."""
    spec = task.spec
    container = spec.container
    host_config: dict[str, Any] = {
        "RestartPolicy": {"Name": "no"},
        "LogConfig": log_config(container.log_driver, container.log_options),
    }
    config: dict[str, Any] = {
        "Image": container.image,
        "Labels": container_labels(task, node_id),
        "HostConfig": host_config,
    }
    if container.command:
        config["Cmd"] = list(container.command)
    if container.entrypoint:
        config["Entrypoint"] = list(container.entrypoint)
    if container.env:
        config["Env"] = [f"{key}={value}" for key, value in sorted(container.env.items())]
    if container.init:
        host_config["Init"] = True
    if container.HasField("healthcheck"):
        config["Healthcheck"] = healthcheck_config(container.healthcheck)

    limits = spec.resources.limits
    if limits.nano_cpus > 0:
        host_config["NanoCpus"] = limits.nano_cpus
    if limits.memory_bytes > 0:
        host_config["Memory"] = limits.memory_bytes

    exposed: dict[str, dict[str, Any]] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for port in spec.ports:
        key = port_key(port.target_port, port.protocol)
        exposed[key] = {}
        # An ingress port is served by every node's mesh: the replica publishes its target on a
        # port the engine picks, which the mesh forwards to. Host mode binds the port itself.
        host_mode = port.mode == objects.PortConfig.PUBLISH_MODE_HOST
        host_port = str(port.published_port) if host_mode and port.published_port else ""
        bindings.setdefault(key, []).append({"HostIp": port.host_ip, "HostPort": host_port})
    if bindings:
        host_config["PortBindings"] = bindings
    for entry in container.expose:
        exposed.update({key: {} for key in expose_keys(entry)})
    if exposed:
        config["ExposedPorts"] = exposed
    apply_container_options(container, config, host_config)
    add_mounts(container, host_config)
    if spec.networks:
        first = network_ids[0] if network_ids else engine_name(spec.networks[0].name)
        host, body = first_network_config(first, resolver, container.dns)
        host_config.update(host)
        config.update(body)
    return config


def apply_container_options(
    container: objects.ContainerSpec, config: dict[str, Any], host_config: dict[str, Any]
) -> None:
    """Compose's container options into the create body; only the fields that are set."""
    for field, key in (("user", "User"), ("working_dir", "WorkingDir"),
                       ("hostname", "Hostname"), ("stop_signal", "StopSignal")):
        value = getattr(container, field)
        if value:
            config[key] = value
    if container.tty:
        config["Tty"] = True
    if container.stdin_open:
        config["OpenStdin"] = True
    for field, key in (("cap_add", "CapAdd"), ("cap_drop", "CapDrop"),
                       ("extra_hosts", "ExtraHosts"), ("dns", "Dns"),
                       ("dns_search", "DnsSearch"), ("dns_opt", "DnsOptions"),
                       ("security_opt", "SecurityOpt"), ("group_add", "GroupAdd")):
        values = getattr(container, field)
        if values:
            host_config[key] = list(values)
    if container.sysctls:
        host_config["Sysctls"] = dict(sorted(container.sysctls.items()))
    if container.ulimits:
        host_config["Ulimits"] = [ulimit_config(u) for u in container.ulimits]
    if container.shm_size_bytes < 0:
        raise ValueError(f"shm_size: {container.shm_size_bytes} bytes; expected a size >= 0")
    if container.shm_size_bytes:
        host_config["ShmSize"] = container.shm_size_bytes
    if container.read_only:
        host_config["ReadonlyRootfs"] = True
    if container.privileged:
        host_config["Privileged"] = True
    # -1 is the engine's "unlimited", which differs from unset (the daemon's default).
    if container.pids_limit:
        host_config["PidsLimit"] = container.pids_limit
    apply_engine_tuning(container, config, host_config)


def apply_engine_tuning(
    container: objects.ContainerSpec, config: dict[str, Any], host_config: dict[str, Any]
) -> None:
    """Devices, namespaces, cpu and memory tuning, runtime, storage and blkio: only those set."""
    if container.devices:
        host_config["Devices"] = [device_config(entry) for entry in container.devices]
    if container.device_cgroup_rules:
        host_config["DeviceCgroupRules"] = list(container.device_cgroup_rules)
    for field, key in (("pid_mode", "PidMode"), ("ipc_mode", "IpcMode"),
                       ("userns_mode", "UsernsMode"), ("cpuset_cpus", "CpusetCpus"),
                       ("runtime", "Runtime"), ("cgroup_parent", "CgroupParent")):
        value = getattr(container, field)
        if value:
            host_config[key] = value
    if container.domainname:
        config["Domainname"] = container.domainname
    if container.cpu_shares < 0:
        raise ValueError(f"cpu_shares: {container.cpu_shares}; expected a weight >= 2")
    if container.cpu_shares:
        host_config["CpuShares"] = container.cpu_shares
    if not -1000 <= container.oom_score_adj <= 1000:
        raise ValueError(f"oom_score_adj: {container.oom_score_adj}; expected -1000 to 1000")
    if container.oom_score_adj:
        host_config["OomScoreAdj"] = container.oom_score_adj
    if container.oom_kill_disable:
        host_config["OomKillDisable"] = True
    if container.memswap_limit_bytes < -1:
        raise ValueError(f"memswap_limit_bytes: {container.memswap_limit_bytes}; expected a "
                         "size >= 0, or -1 for unlimited swap")
    if container.memswap_limit_bytes:
        host_config["MemorySwap"] = container.memswap_limit_bytes
    if container.storage_opt:
        host_config["StorageOpt"] = dict(sorted(container.storage_opt.items()))
    if container.blkio_weight and not 10 <= container.blkio_weight <= 1000:
        raise ValueError(f"blkio_weight: {container.blkio_weight}; expected 10 to 1000")
    if container.blkio_weight:
        host_config["BlkioWeight"] = container.blkio_weight


_DEVICE_PERMISSIONS = re.compile(r"[rwm]{1,3}")


def device_config(entry: str) -> dict[str, str]:
    """One HostConfig.Devices entry of "/dev/HOST[:/dev/CONTAINER[:PERMISSIONS]]"."""
    host, _, rest = entry.partition(":")
    target, _, permissions = rest.partition(":")
    target, permissions = target or host, permissions or "rwm"
    if not host.startswith("/") or not target.startswith("/") or ":" in permissions \
            or not _DEVICE_PERMISSIONS.fullmatch(permissions):
        raise ValueError(f"devices: {entry!r}; expected /dev/HOST[:/dev/CONTAINER[:rwm]] with "
                         "absolute paths")
    return {"PathOnHost": host, "PathInContainer": target, "CgroupPermissions": permissions}


_MOUNT_TYPES = {objects.Mount.TYPE_VOLUME: "volume", objects.Mount.TYPE_BIND: "bind",
                objects.Mount.TYPE_TMPFS: "tmpfs"}
_BIND_MISSING_RE = re.compile(r"bind source path does not exist: (\S+)")


def add_mounts(container: objects.ContainerSpec, host_config: dict[str, Any]) -> None:
    """The spec's mounts into HostConfig.Mounts (and Binds), after any already there."""
    for mount in container.mounts:
        if mount.type == objects.Mount.TYPE_BIND and mount.create_host_path:
            options = ",".join(o for o in ("ro" if mount.read_only else "", mount.propagation)
                               if o)
            bind = f"{mount.source}:{mount.target}" + (f":{options}" if options else "")
            host_config.setdefault("Binds", []).append(bind)
        else:
            host_config.setdefault("Mounts", []).append(mount_config(mount))


def mount_config(mount: objects.Mount) -> dict[str, Any]:
    """One HostConfig.Mounts entry; only the options of the mount's type, only those set."""
    kind = _MOUNT_TYPES.get(mount.type)
    if kind is None:
        raise ValueError(f"mounts: type {mount.type} of {mount.target!r}: expected volume, "
                         "bind or tmpfs")
    entry: dict[str, Any] = {"Type": kind, "Target": mount.target}
    if mount.source:
        entry["Source"] = mount.source
    if mount.read_only:
        entry["ReadOnly"] = True
    if kind == "volume":
        volume: dict[str, Any] = {}
        if mount.no_copy:
            volume["NoCopy"] = True
        labels = dict(sorted(mount.labels.items()))
        if labels:
            volume["Labels"] = labels
        if mount.driver or mount.driver_options:
            driver: dict[str, Any] = {"Name": mount.driver or "local"}
            if mount.driver_options:
                driver["Options"] = dict(sorted(mount.driver_options.items()))
            volume["DriverConfig"] = driver
        if volume:
            entry["VolumeOptions"] = volume
    elif kind == "bind" and mount.propagation:
        entry["BindOptions"] = {"Propagation": mount.propagation}
    elif kind == "tmpfs" and (mount.tmpfs_size_bytes or mount.tmpfs_mode):
        tmpfs: dict[str, Any] = {}
        if mount.tmpfs_size_bytes:
            tmpfs["SizeBytes"] = mount.tmpfs_size_bytes
        if mount.tmpfs_mode:
            tmpfs["Mode"] = mount.tmpfs_mode
        entry["TmpfsOptions"] = tmpfs
    return entry


def external_volumes(container: objects.ContainerSpec) -> list[str]:
    """Names of the volumes the spec mounts that must exist on the node already."""
    return [m.source for m in container.mounts
            if m.type == objects.Mount.TYPE_VOLUME and m.source
            and m.external]


def bind_source_missing(engine_message: str) -> str | None:
    """The path of a bind mount the engine refused because its source does not exist."""
    match = _BIND_MISSING_RE.search(engine_message)
    return match.group(1) if match else None


def log_config(driver: str, options: Mapping[str, str]) -> dict[str, Any]:
    """The engine's LogConfig: Podium's rotation for json-file, else the user's options only."""
    driver = driver or _DEFAULT_LOG_DRIVER
    if driver == _DEFAULT_LOG_DRIVER:
        return {"Type": driver, "Config": _LOG_ROTATION | dict(sorted(options.items()))}
    return {"Type": driver, "Config": dict(sorted(options.items()))}


def ulimit_config(ulimit: objects.Ulimit) -> dict[str, Any]:
    if not ulimit.name:
        raise ValueError("ulimits: an entry has no name; expected e.g. nofile")
    hard = ulimit.hard or ulimit.soft
    if ulimit.soft > hard:
        raise ValueError(
            f"ulimits.{ulimit.name}: soft limit {ulimit.soft} is above the hard limit {hard}"
        )
    return {"Name": ulimit.name, "Soft": ulimit.soft, "Hard": hard}


def expose_keys(entry: str) -> list[str]:
    """ExposedPorts keys of one Compose `expose` entry: "80", "80/udp", "8000-8010/tcp"."""
    match = _EXPOSE_RE.match(entry.strip())
    if match is None:
        raise ValueError(
            f"expose: {entry!r} is not a port; expected PORT, PORT/PROTOCOL or FIRST-LAST/PROTOCOL"
        )
    first = int(match.group(1))
    last = int(match.group(2) or first)
    protocol = (match.group(3) or "tcp").lower()
    if not 1 <= first <= last <= 65535:
        raise ValueError(f"expose: {entry!r}: ports are 1-65535, the first of a range first")
    if last - first >= _EXPOSE_MAX_RANGE:
        raise ValueError(f"expose: {entry!r}: at most {_EXPOSE_MAX_RANGE} ports in a range")
    return [f"{port}/{protocol}" for port in range(first, last + 1)]


def healthcheck_config(check: objects.HealthCheck) -> dict[str, Any]:
    """The engine's Healthcheck document; unset durations are left to the engine's defaults.
    StartInterval needs engine API 1.44: older engines ignore it."""
    config: dict[str, Any] = {"Test": list(check.test)}
    for field, key in (("interval", "Interval"), ("timeout", "Timeout"),
                       ("start_period", "StartPeriod"), ("start_interval", "StartInterval")):
        if check.HasField(field):
            config[key] = getattr(check, field).ToNanoseconds()
    if check.retries:
        config["Retries"] = check.retries
    return config


def container_state(inspected: Mapping[str, Any]) -> ContainerState:
    """A ContainerState from the engine's GET /containers/{id}/json document."""
    state: Mapping[str, Any] = inspected.get("State") or {}
    labels: Mapping[str, str] = (inspected.get("Config") or {}).get("Labels") or {}
    running = bool(state.get("Running", False))
    started_at = parse_time(state.get("StartedAt", ""))
    raw_exit = state.get("ExitCode")
    exit_code: int | None = None
    # A created container reports ExitCode 0 before it ever ran; a failed start reports the
    # engine's code (126/127) with StartedAt still zero, which the caller needs to see.
    if not running and raw_exit is not None and (started_at is not None or raw_exit != 0):
        exit_code = int(raw_exit)
    network: Mapping[str, Any] = inspected.get("NetworkSettings") or {}
    health: Mapping[str, Any] = state.get("Health") or {}
    log = health.get("Log") or []
    last_output = str(log[-1].get("Output") or "").strip() if log else ""
    addresses = [str(n.get("IPAddress") or "") for n in (network.get("Networks") or {}).values()]
    return ContainerState(
        container_id=str(inspected.get("Id", "")),
        task_id=labels.get(LABEL_TASK, ""),
        name=str(inspected.get("Name", "")).lstrip("/"),
        running=running,
        exit_code=exit_code,
        error=str(state.get("Error") or ""),
        oom_killed=bool(state.get("OOMKilled", False)),
        started_at=started_at,
        finished_at=None if running else parse_time(state.get("FinishedAt", "")),
        ports=port_bindings(network.get("Ports") or {}),
        health=str(health.get("Status") or "") if running else "",
        health_output=last_output[-200:],
        pid=int(state.get("Pid") or 0),
        ip_address=str(network.get("IPAddress") or next((a for a in addresses if a), "")),
    )


def port_bindings(ports: Mapping[str, Any]) -> tuple[objects.PortBinding, ...]:
    """NetworkSettings.Ports ({"80/tcp": [{"HostIp", "HostPort"}] or null}) as PortBindings."""
    result: list[objects.PortBinding] = []
    for key, bound in ports.items():
        if not bound:
            continue  # exposed but not published
        target, _, proto_name = key.partition("/")
        protocol = _PROTOCOLS_BY_NAME.get(proto_name or "tcp")
        if protocol is None or not target.isdigit():
            continue  # sctp, or something this API cannot express
        for binding in bound:
            host_port = str(binding.get("HostPort") or "")
            result.append(
                objects.PortBinding(
                    protocol=protocol,
                    target_port=int(target),
                    published_port=int(host_port) if host_port.isdigit() else 0,
                    host_ip=str(binding.get("HostIp") or ""),
                )
            )
    result.sort(key=lambda b: (b.target_port, b.protocol, b.host_ip, b.published_port))
    return tuple(result)


def container_event(message: Mapping[str, Any]) -> ContainerEvent | None:
    """A ContainerEvent from one message of GET /events, or None for events the agent ignores."""
    if message.get("Type") != "container":
        return None
    action = message.get("Action") or message.get("status") or ""
    action = action.partition(":")[0]  # "health_status: healthy"
    if action not in ENGINE_ACTIONS:
        return None  # exec_*, health_status: ..., attach, kill, stop ...
    actor: Mapping[str, Any] = message.get("Actor") or {}
    attributes: Mapping[str, str] = actor.get("Attributes") or {}
    exit_code: int | None = None
    if action == "die":
        raw = attributes.get("exitCode", "")
        exit_code = int(raw) if raw.lstrip("-").isdigit() else None
    time_ns = message.get("timeNano")
    if time_ns is None:
        time_ns = int(message.get("time", 0)) * 1_000_000_000
    return ContainerEvent(
        task_id=attributes.get(LABEL_TASK, ""),
        container_id=str(actor.get("ID") or message.get("id") or ""),
        action=action,
        exit_code=exit_code,
        time_ns=int(time_ns),
    )


def parse_time(value: str) -> float | None:
    """The engine's RFC 3339 time (nanosecond fraction) as unix seconds; None for zero or junk."""
    if not value or value.startswith(_ZERO_TIME_PREFIX):
        return None
    ns = parse_time_ns(value)
    return None if ns is None else ns / 1e9


def parse_time_ns(value: str) -> int | None:
    """Like parse_time(), in integer nanoseconds (exact: a float loses the last digits)."""
    match = _TIME_RE.match(value)
    if match is None:
        return None
    whole, fraction, zone = match.groups()
    offset = "+00:00" if zone.upper() == "Z" else zone
    seconds = int(datetime.fromisoformat(whole + offset).timestamp())
    nanos = int((fraction or "").ljust(9, "0")[:9])
    return seconds * 1_000_000_000 + nanos
