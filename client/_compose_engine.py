"""The service keys of a Compose file that tune the engine (devices, namespaces, cpu, memory,
runtime, storage), the short forms of deploy's resources and replicas, and the remaining keys of
the Compose spec that Podium ignores or refuses.

`check_refused(data, at)` raises SpecError for the keys whose running would do something else
than the file says; call it before reading `image`:
- `volumes_from` shares another container's volumes, which on a cluster may be on another host;
- `extends` pulls a service from another file or service, and Podium reads one file;
- `pid`, `ipc` as `service:X` / `container:X` share another container's namespace.

`set_engine_options(data, spec, at)` reads the keys into `spec` (whose deploy must already be
read) and returns the warnings, one line per ignored key (or deploy.* key) per service:
- spec.container, the engine's meaning: `devices` (short `/dev/HOST[:/dev/CONTAINER[:rwm]]` or
  long {source, target, permissions}; absolute paths; stored as HOST:CONTAINER:PERMISSIONS),
  `device_cgroup_rules` (`c 1:3 mr`, `a *:* rwm`), `pid` (`host`), `ipc` (host, shareable,
  private, none), `userns_mode` (`host`), `domainname`, `cpu_shares` (>= 2), `cpuset` (`0-3`,
  `1,3`), `oom_score_adj` (-1000..1000), `oom_kill_disable`, `memswap_limit` (a size, or -1
  for unlimited swap; it needs a memory limit and is at least that limit), `runtime`,
  `cgroup_parent`, `storage_opt` (a mapping), `blkio_config.weight` (10..1000; the per-device
  keys are ignored with a warning: device numbers differ from node to node).
- spec.resources: `cpus`, `mem_limit` -> limits, `mem_reservation` -> reservations, and
  `cpu_quota` (with `cpu_period`, default 100000, both in microseconds) -> limits.nano_cpus;
  a value deploy.resources also gives is ignored with a warning (deploy wins), and so is
  `cpu_quota` when `cpus` is given. `deploy.resources.limits.pids` -> container.pids_limit
  (pids_limit wins, with a warning).
- `scale` -> spec.replicas unless deploy.replicas is given (it wins, with a warning); not with
  mode global. `label_file` (a path or a list, relative to the Compose file): KEY=VALUE lines
  as env_file's, added to the container labels; `labels` wins over them.
- deploy.endpoint_mode: `vip` is what Podium does; `dnsrr` is ignored with a warning.
  deploy.placement.preferences and max_replicas_per_node, deploy.resources.reservations
  devices and generic_resources: ignored with a warning saying why.
- IGNORED's keys: accepted with a warning naming why (compose.py's _WARNED lists them too).
"""

from __future__ import annotations

import pathlib
import re

from podium.client._compose_options import _env_files, _flag
from podium.client.compose import (
    SpecError,
    _At,
    _choice,
    _mapping,
    _nano_cpus,
    _string_map,
    parse_bytes,
)
from podium.v1 import objects

__all__ = ["IGNORED", "REFUSED", "check_refused", "set_engine_options"]

# Keys of the Compose spec with no meaning on a cluster, or that Podium cannot carry out:
# accepted with a warning saying why.
IGNORED = {
    "platform": "each node runs the image it already has, for its own platform",
    "mac_address": "every replica would get the same address; services are reached at virtual "
                   "IPs Podium picks",
    "isolation": "it selects a Windows container isolation technology; Podium runs Linux nodes",
    "credential_spec": "it configures Windows managed service accounts; Podium runs Linux nodes",
    "annotations": "the engines Podium runs on (API 1.41) have no container annotations",
    "use_api_socket": "tasks are not given an engine's socket or its credentials",
    "gpus": "GPU requests are not supported by Podium yet",
    "cpu_count": "it applies to Windows containers only",
    "cpu_percent": "it applies to Windows containers only",
    "cpu_rt_period": "real-time scheduling is not supported by Podium yet",
    "cpu_rt_runtime": "real-time scheduling is not supported by Podium yet",
    "mem_swappiness": "not supported by Podium yet: the node's swappiness applies",
    "post_start": "lifecycle hooks are not supported by Podium yet",
    "pre_stop": "lifecycle hooks are not supported by Podium yet",
    "provider": "services run by an external provider are not supported; the image runs",
    "models": "AI models served by the local Docker model runner are not available on a cluster",
    "uts": "the UTS namespace is not supported by Podium yet: tasks get their own",
    "cgroup": "the cgroup namespace is not supported by Podium yet: the engine's default applies",
    "pull_refresh_after": "Podium runs the image already present on each node",
}  # fmt: skip
REFUSED = ("extends", "volumes_from")
_MEMORY_KEYS = {"mem_limit": ("limits", "memory"), "mem_reservation": ("reservations", "memory")}


def check_refused(data: dict[str, object], at: _At) -> None:
    """The errors for keys that would deploy something else than the file says."""
    if "volumes_from" in data:
        raise SpecError(f"{at.sub('volumes_from')}: it shares another container's volumes, "
                        "which on a cluster may be on another host: declare a named volume "
                        "in the top-level volumes and mount it in both services")
    if "extends" in data:
        raise SpecError(f"{at.sub('extends')}: Podium reads one file: merge it first with "
                        "`docker compose config > merged.yml` and deploy that")
    for key in ("pid", "ipc"):
        mode = data.get(key)
        if isinstance(mode, str) and mode.startswith(("service:", "container:")):
            raise SpecError(f"{at.sub(key)}: {mode!r} shares another container's {key} "
                            "namespace, which on a cluster may run on another host: remove it")


def set_engine_options(data: dict[str, object], spec: objects.ServiceSpec, at: _At,
                       directory: pathlib.Path) -> list[str]:
    warnings = [f"{at}: ignoring {key}: {IGNORED[key]}" for key in data if key in IGNORED]
    deploy = data.get("deploy")
    deploy = deploy if isinstance(deploy, dict) else {}
    _container(data, spec.container, at)
    warnings.extend(_resources(data, spec, deploy, at))
    if "blkio_config" in data:
        warnings.extend(_blkio(data["blkio_config"], spec.container, at.sub("blkio_config")))
    if "scale" in data:
        scale = data["scale"]
        if isinstance(scale, str) and scale.isascii() and scale.isdigit():
            scale = int(scale)
        if isinstance(scale, bool) or not isinstance(scale, int) or not 0 <= scale < 2**32:
            raise at.sub("scale").error("a non-negative integer", data["scale"])
        if spec.mode == objects.ServiceSpec.MODE_GLOBAL:
            raise SpecError(f"{at.sub('scale')}: not allowed with deploy.mode: global")
        if "replicas" in deploy:
            warnings.append(f"{at}: ignoring scale: deploy.replicas is given and wins")
        else:
            spec.replicas = scale
    if "label_file" in data:
        labels = _env_files(data["label_file"], at.sub("label_file"), directory)
        explicit = _string_map(data.get("labels", {}), at.sub("labels"))
        spec.container.labels.update({k: v for k, v in labels.items() if k not in explicit})
    warnings.extend(_deploy_extras(deploy, at.sub("deploy")))
    _check_swap(spec, at)
    return warnings


def _string(value: object, at: _At, expected: str = "a non-empty string") -> str:
    if not isinstance(value, str) or not value:
        raise at.error(expected, value)
    return value


def _integer(value: object, at: _At, low: int, high: int, expected: str) -> int:
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise at.error(expected, value)
    return value


_PERMISSIONS = re.compile(r"[rwm]{1,3}")
_CGROUP_RULE = re.compile(r"[acb] ([0-9]+|\*):([0-9]+|\*) [rwm]{1,3}")
_CPUSET = re.compile(r"[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*")
_DEVICE = "'/dev/HOST[:/dev/CONTAINER[:PERMISSIONS]]' or {source, target, permissions}"
_INT64 = 2**63 - 1


def _device(item: object, at: _At) -> str:
    if isinstance(item, dict):
        data = _mapping(item, at, "devices[]")
        if "source" not in data:
            raise SpecError(f"{at}: 'source' is required in the long device syntax")
        source = data["source"]
        target = data.get("target", source)
        permissions = data.get("permissions", "rwm")
    elif isinstance(item, str):
        source, target, permissions, *rest = [*item.split(":"), "", ""]
        if rest != ["", ""] and any(rest):
            raise at.error(_DEVICE, item)
        target, permissions = target or source, permissions or "rwm"
    else:
        raise at.error(_DEVICE, item)
    for key, path in (("source", source), ("target", target)):
        if not isinstance(path, str) or not path.startswith("/"):
            where = at.sub(key) if isinstance(item, dict) else at
            raise where.error(f"an absolute device path such as '/dev/fuse' ({key})", path)
    if not isinstance(permissions, str) or not _PERMISSIONS.fullmatch(permissions):
        where = at.sub("permissions") if isinstance(item, dict) else at
        raise where.error("cgroup permissions: some of r, w and m, such as 'rwm'", permissions)
    return f"{source}:{target}:{permissions}"


def _container(data: dict[str, object], container: objects.ContainerSpec, at: _At) -> None:
    if "devices" in data:
        devices = data["devices"]
        if not isinstance(devices, list):
            raise at.sub("devices").error(f"a list of {_DEVICE}", devices)
        container.devices.extend(_device(d, at.sub("devices").sub(i))
                                 for i, d in enumerate(devices))
    if "device_cgroup_rules" in data:
        rules = data["device_cgroup_rules"]
        where = at.sub("device_cgroup_rules")
        if not isinstance(rules, list):
            raise where.error("a list of rules such as 'c 1:3 mr'", rules)
        for i, rule in enumerate(rules):
            if not isinstance(rule, str) or not _CGROUP_RULE.fullmatch(rule):
                raise where.sub(i).error("a rule 'TYPE MAJOR:MINOR PERMISSIONS' such as "
                                         "'c 1:3 mr' or 'a *:* rwm'", rule)
            container.device_cgroup_rules.append(rule)
    if "pid" in data and data["pid"] is not None:
        container.pid_mode = _choice(data["pid"], ("host",), at.sub("pid"))
    if "ipc" in data:
        container.ipc_mode = _choice(data["ipc"], ("host", "shareable", "private", "none"),
                                     at.sub("ipc"))
    if "userns_mode" in data:
        container.userns_mode = _choice(data["userns_mode"], ("host",), at.sub("userns_mode"))
    for key, field in (("domainname", "domainname"), ("runtime", "runtime"),
                       ("cgroup_parent", "cgroup_parent")):
        if key in data:
            setattr(container, field, _string(data[key], at.sub(key)))
    if "cpu_shares" in data:
        container.cpu_shares = _integer(data["cpu_shares"], at.sub("cpu_shares"), 2, 262144,
                                        "a relative weight from 2 to 262144 (1024: default)")
    if "cpuset" in data:
        cpuset = data["cpuset"]
        text = str(cpuset) if isinstance(cpuset, int) and not isinstance(cpuset, bool) else cpuset
        if not isinstance(text, str) or not _CPUSET.fullmatch(text):
            raise at.sub("cpuset").error("cpus such as '0-3' or '1,3'", cpuset)
        container.cpuset_cpus = text
    if "oom_score_adj" in data:
        container.oom_score_adj = _integer(data["oom_score_adj"], at.sub("oom_score_adj"),
                                           -1000, 1000, "an integer from -1000 to 1000")
    if "oom_kill_disable" in data:
        container.oom_kill_disable = _flag(data["oom_kill_disable"], at.sub("oom_kill_disable"))
    if "memswap_limit" in data:
        swap = data["memswap_limit"]
        if swap in (-1, "-1"):
            container.memswap_limit_bytes = -1
        else:
            where = at.sub("memswap_limit")
            container.memswap_limit_bytes = parse_bytes(swap, where=f"{where} (or -1)")
    if "storage_opt" in data:
        options = data["storage_opt"]
        if not isinstance(options, dict):
            raise at.sub("storage_opt").error("a mapping such as {size: 1G}", options)
        container.storage_opt.update(_string_map(options, at.sub("storage_opt")))


def _resources(data: dict[str, object], spec: objects.ServiceSpec, deploy: dict[str, object],
               at: _At) -> list[str]:
    """cpus, mem_limit, mem_reservation, cpu_quota/cpu_period, deploy.resources.limits.pids."""
    warnings = []
    resources = deploy.get("resources")
    given = {kind: dict(amounts) for kind, amounts in resources.items()
             if isinstance(amounts, dict)} if isinstance(resources, dict) else {}
    if "cpus" in data and data["cpus"] not in (0, "0"):  # 0: no limit, as Compose reads it
        nano = _nano_cpus(data["cpus"], at.sub("cpus"))
        if "cpus" in given.get("limits", {}):
            warnings.append(f"{at}: ignoring cpus: deploy.resources.limits.cpus is given and "
                            "wins")
        else:
            spec.resources.limits.nano_cpus = nano
    for key, (kind, amount) in _MEMORY_KEYS.items():
        if key in data:
            size = parse_bytes(data[key], where=str(at.sub(key)))
            if amount in given.get(kind, {}):
                warnings.append(f"{at}: ignoring {key}: deploy.resources.{kind}.{amount} is "
                                "given and wins")
            else:
                getattr(spec.resources, kind).memory_bytes = size
    if "cpu_quota" in data or "cpu_period" in data:
        period = 100_000
        if "cpu_period" in data:
            period = _integer(data["cpu_period"], at.sub("cpu_period"), 1000, 1_000_000,
                              "microseconds from 1000 to 1000000")
        if "cpu_quota" not in data:
            warnings.append(f"{at}: ignoring cpu_period: without cpu_quota it limits nothing")
        else:
            quota = _integer(data["cpu_quota"], at.sub("cpu_quota"), 1000, _INT64,
                             "microseconds >= 1000")
            if "cpus" in data or "cpus" in given.get("limits", {}):
                which = "cpus" if "cpus" in data else "deploy.resources.limits.cpus"
                warnings.append(f"{at}: ignoring cpu_quota: {which} is given and wins")
            else:
                spec.resources.limits.nano_cpus = quota * 10**9 // period
    limits = given.get("limits", {})
    if "pids" in limits:
        where = at.sub("deploy").sub("resources").sub("limits").sub("pids")
        pids = _integer(limits["pids"], where, 1, _INT64, "a positive integer")
        if "pids_limit" in data:
            warnings.append(f"{at}: ignoring deploy.resources.limits.pids: pids_limit is given "
                            "and wins")
        else:
            spec.container.pids_limit = pids
    return warnings


_BLKIO_DEVICE_KEYS = ("device_read_bps", "device_read_iops", "device_write_bps",
                      "device_write_iops", "weight_device")


def _blkio(value: object, container: objects.ContainerSpec, at: _At) -> list[str]:
    data = _mapping(value, at, "blkio_config")
    if "weight" in data:
        container.blkio_weight = _integer(data["weight"], at.sub("weight"), 10, 1000,
                                          "a weight from 10 to 1000")
    return [f"{_At(at.service)}: ignoring {at.sub(key).path}: device numbers "
            "differ from node to node" for key in _BLKIO_DEVICE_KEYS if key in data]


def _deploy_extras(deploy: dict[str, object], at: _At) -> list[str]:
    service = _At(at.service)
    warnings = []
    if "endpoint_mode" in deploy:
        mode = _choice(deploy["endpoint_mode"], ("vip", "dnsrr"), at.sub("endpoint_mode"))
        if mode == "dnsrr":
            warnings.append(f"{service}: ignoring deploy.endpoint_mode: dnsrr: names resolve to "
                            "a virtual IP that spreads connections over the replicas")
    placement = deploy.get("placement")
    if isinstance(placement, dict):
        if "preferences" in placement:
            warnings.append(f"{service}: ignoring deploy.placement.preferences: Podium spreads "
                            "a service's tasks over the nodes by their task counts, not by "
                            "node labels")
        if "max_replicas_per_node" in placement:
            _integer(placement["max_replicas_per_node"],
                     at.sub("placement").sub("max_replicas_per_node"), 0, 2**32 - 1,
                     "a non-negative integer")
            warnings.append(f"{service}: ignoring deploy.placement.max_replicas_per_node: "
                            "Podium spreads a service's tasks over the nodes but does not cap "
                            "them per node")
    resources = deploy.get("resources")
    reservations = resources.get("reservations") if isinstance(resources, dict) else None
    if isinstance(reservations, dict):
        for key in ("devices", "generic_resources"):
            if key in reservations:
                warnings.append(f"{service}: ignoring deploy.resources.reservations.{key}: "
                                "Podium schedules by cpus and memory only")
    return warnings


def _check_swap(spec: objects.ServiceSpec, at: _At) -> None:
    """The engine refuses a swap limit without a memory limit, or below it."""
    swap = spec.container.memswap_limit_bytes
    memory = spec.resources.limits.memory_bytes
    if swap <= 0:  # unset, or -1: unlimited swap
        return
    if not memory:
        raise SpecError(f"{at.sub('memswap_limit')}: needs a memory limit (mem_limit or "
                        "deploy.resources.limits.memory)")
    if swap < memory:
        raise at.sub("memswap_limit").error(f"at least the memory limit ({memory} bytes), or -1",
                                            swap)
