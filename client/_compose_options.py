"""The service keys of a Compose file that set container options, and the keys Podium ignores.

`set_options(data, spec, service, directory, names)` reads them from one service's mapping (which
compose.py has checked to hold only supported or ignored keys) into `spec` and returns the
warnings to print, one line per ignored key; it raises SpecError as compose.py does:

- Container options, with the engine's meaning, into spec.container: `user` (a name or uid,
  string or integer), `working_dir` (an absolute path), `hostname`, `cap_add` / `cap_drop`,
  `security_opt`, `dns_opt` (lists of strings), `group_add` (names or gids), `sysctls` (a mapping
  or a list of `KEY=VALUE`), `ulimits` (`nofile: 1024` or `nofile: {soft, hard}`, soft <= hard),
  `stop_signal` (`SIGTERM`, `TERM` or a number), `tty`, `stdin_open`, `read_only`, `privileged`
  (booleans), `extra_hosts` (a list of `HOST:IP` or `HOST=IP`, or a mapping HOST: IP, stored as
  HOST:IP; the IP may be `host-gateway`), `dns` (an IP or a list of IPs), `dns_search` (a domain
  or a list), `shm_size` (a size such as `64m`), `logging` {driver, options}, `expose` (ports or
  ranges, optionally `/tcp` or `/udp`), `pids_limit` (-1 for no limit, or a positive integer).
- `restart` (no | always | on-failure[:N] | unless-stopped) -> spec.restart_policy when
  deploy.restart_policy is not given (it wins, with a warning): none, any, on-failure with
  max_attempts N, any.
- `env_file` (a path or a list of paths or {path, required}; relative to `directory`, the
  Compose file's folder): KEY=VALUE lines read now, `#` comments and blank lines skipped, an
  optional `export ` prefix, quotes around a value removed; later files win, `environment` wins
  over all.
- `depends_on` (a list of services or the long form {SERVICE: {condition, restart, required}})
  is checked against `names`, the file's services, and orders nothing: on a cluster every
  service starts at once and a task whose dependency is not up yet fails and is restarted.
- Ignored, with a warning naming why: IGNORED's keys, and `build` when `image` is given.
  Errors: `build` without `image`, `network_mode` (service:X and container:X share another
  container's namespace, which on a cluster may run on another host; the others are not
  supported yet).
"""

from __future__ import annotations

import ipaddress
import pathlib
import re

from podium.client.compose import (
    SpecError,
    _At,
    _choice,
    _mapping,
    _port_range,
    _string_map,
    _text,
    parse_bytes,
)
from podium.v1 import objects

__all__ = ["IGNORED", "check_build", "profiles", "set_options"]

# Keys of the Compose spec that mean nothing on a cluster: accepted with a warning saying why.
IGNORED = {
    "container_name": "a service runs many tasks, and Podium names each task's container itself",
    "links": "legacy links between containers of one host; Podium does not create them",
    "external_links": "legacy links between containers of one host; Podium does not create them",
    "attach": "it only says whether `docker compose up` shows the service's output",
    "develop": "`docker compose watch` syncs local files into running containers; a cluster "
               "deploys images",
    "pull_policy": "Podium runs the image already present on each node",
}  # fmt: skip
_BUILD = "Podium deploys images, it does not build them: the image named in `image` runs"


def check_build(data: dict[str, object], at: _At) -> None:
    """The error for `build` without `image`, and for network_mode; call before reading image."""
    if "build" in data and "image" not in data:
        raise SpecError(f"service {at.service!r}: build without image: build it and give its "
                        "image name in `image`")
    if "network_mode" in data:
        mode = data["network_mode"]
        where = at.sub("network_mode")
        if isinstance(mode, str) and mode.startswith(("service:", "container:")):
            raise SpecError(f"{where}: {mode!r} shares another container's network namespace, "
                            "which on a cluster may run on another host: remove it")
        raise SpecError(f"{where}: {_text(mode, where)!r} is not supported by Podium yet: "
                        "remove it (tasks run on the engine's default network)")


def profiles(data: dict[str, object], at: _At) -> list[str]:
    """The service's `profiles` (empty: always deployed)."""
    value = data.get("profiles", [])
    if not isinstance(value, list) or not all(
        isinstance(p, str) and re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", p) for p in value
    ):
        raise at.sub("profiles").error("a list of profile names ([a-zA-Z0-9][a-zA-Z0-9_.-]*)",
                                       value)
    return list(value)


def set_options(data: dict[str, object], spec: objects.ServiceSpec, service: str,
                directory: pathlib.Path, names: frozenset[str]) -> list[str]:
    at = _At(service)
    warnings = [f"service {service!r}: ignoring {key}: {IGNORED[key]}"
                for key in data if key in IGNORED]
    if "build" in data:
        warnings.append(f"service {service!r}: ignoring build: {_BUILD}")
    _container(data, spec.container, at)
    if "env_file" in data:
        from_files = _env_files(data["env_file"], at.sub("env_file"), directory)
        spec.container.env.update({k: v for k, v in from_files.items()
                                   if k not in _explicit_env(data)})
    if "restart" in data:
        policy = _restart(data["restart"], at.sub("restart"))
        deploy = data.get("deploy")
        if isinstance(deploy, dict) and "restart_policy" in deploy:
            warnings.append(f"service {service!r}: ignoring restart: deploy.restart_policy is "
                            "given and wins")
        else:
            spec.restart_policy.CopyFrom(policy)
    if "depends_on" in data:
        _depends_on(data["depends_on"], at.sub("depends_on"), names)
    return warnings


def _explicit_env(data: dict[str, object]) -> set[str]:
    env = data.get("environment", {})
    if isinstance(env, list):
        return {str(entry).partition("=")[0] for entry in env}
    return set(env) if isinstance(env, dict) else set()


def _flag(value: object, at: _At) -> bool:
    if not isinstance(value, bool):
        raise at.error("true or false", value)
    return value


def _strings(value: object, at: _At, *, single: bool = False) -> list[str]:
    if single and isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        form = "a string or a list of strings" if single else "a list of non-empty strings"
        raise at.error(form, value)
    return list(value)


def _ip(value: object, at: _At, *, extra: tuple[str, ...] = ()) -> str:
    if isinstance(value, str) and value in extra:
        return value
    try:
        return str(ipaddress.ip_address(value if isinstance(value, str) else ""))
    except ValueError:
        raise at.error("an IP address" + "".join(f" or {e!r}" for e in extra), value) from None


_SIGNAL = re.compile(r"(?:SIG)?[A-Z][A-Z0-9+-]*|[0-9]{1,2}")
_LIMIT = 2**63 - 1


def _container(data: dict[str, object], container: objects.ContainerSpec, at: _At) -> None:
    for key in ("user", "hostname"):
        if key in data:
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
                raise at.sub(key).error("a non-empty string" + (" or a uid" if key == "user"
                                                                else ""), value)
            setattr(container, key, str(value))
    if "working_dir" in data:
        path = data["working_dir"]
        if not isinstance(path, str) or not path.startswith("/"):
            raise at.sub("working_dir").error("an absolute path such as '/app'", path)
        container.working_dir = path
    for key in ("cap_add", "cap_drop", "security_opt", "dns_opt"):
        if key in data:
            getattr(container, key).extend(_strings(data[key], at.sub(key)))
    if "dns_search" in data:
        container.dns_search.extend(_strings(data["dns_search"], at.sub("dns_search"),
                                             single=True))
    if "group_add" in data:
        groups = data["group_add"]
        if not isinstance(groups, list) or not all(
            isinstance(g, str | int) and not isinstance(g, bool) and g != "" for g in groups
        ):
            raise at.sub("group_add").error("a list of group names or gids", groups)
        container.group_add.extend(str(g) for g in groups)
    if "sysctls" in data:
        container.sysctls.update(_string_map(data["sysctls"], at.sub("sysctls")))
    if "ulimits" in data:
        container.ulimits.extend(_ulimits(data["ulimits"], at.sub("ulimits")))
    if "stop_signal" in data:
        signal = data["stop_signal"]
        if not isinstance(signal, str) or not _SIGNAL.fullmatch(signal):
            raise at.sub("stop_signal").error("a signal such as 'SIGTERM', 'QUIT' or '15'", signal)
        container.stop_signal = signal
    for key in ("tty", "stdin_open", "read_only", "privileged"):
        if key in data:
            setattr(container, key, _flag(data[key], at.sub(key)))
    if "extra_hosts" in data:
        container.extra_hosts.extend(_extra_hosts(data["extra_hosts"], at.sub("extra_hosts")))
    if "dns" in data:
        where = at.sub("dns")
        servers = data["dns"]
        for i, server in enumerate(servers if isinstance(servers, list) else [servers]):
            container.dns.append(_ip(server, where.sub(i) if isinstance(servers, list) else where))
    if "shm_size" in data:
        container.shm_size_bytes = parse_bytes(data["shm_size"], where=str(at.sub("shm_size")))
    if "logging" in data:
        logging = _mapping(data["logging"], at.sub("logging"), "logging")
        if "driver" in logging:
            driver = logging["driver"]
            if not isinstance(driver, str) or not driver:
                raise at.sub("logging").sub("driver").error("a log driver name such as "
                                                            "'json-file'", driver)
            container.log_driver = driver
        options = _string_map(logging.get("options", {}), at.sub("logging").sub("options"))
        container.log_options.update(options)
    if "expose" in data:
        container.expose.extend(_expose(data["expose"], at.sub("expose")))
    if "pids_limit" in data:
        limit = data["pids_limit"]
        if isinstance(limit, bool) or not isinstance(limit, int) or not (
            limit == -1 or 1 <= limit <= _LIMIT
        ):
            raise at.sub("pids_limit").error("a positive integer, or -1 for no limit", limit)
        container.pids_limit = limit


def _ulimit_value(value: object, at: _At) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not -1 <= value <= _LIMIT:
        raise at.error("an integer >= 0, or -1 for unlimited", value)
    return value


def _ulimits(value: object, at: _At) -> list[objects.Ulimit]:
    if not isinstance(value, dict):
        raise at.error("a mapping such as {nofile: 65536} or {nofile: {soft: 1024, hard: "
                       "65536}}", value)
    limits = []
    for name, limit in value.items():
        where = at.sub(str(name))
        if not isinstance(name, str) or not re.fullmatch(r"[a-z]+", name):
            raise at.error("ulimit names such as 'nofile' or 'nproc'", name)
        if isinstance(limit, dict):
            pair = _mapping(limit, where, "ulimits.*")
            for key in ("soft", "hard"):
                if key not in pair:
                    raise SpecError(f"{where}: 'soft' and 'hard' are both required")
            soft = _ulimit_value(pair["soft"], where.sub("soft"))
            hard = _ulimit_value(pair["hard"], where.sub("hard"))
            if hard != -1 and (soft == -1 or soft > hard):
                raise where.sub("soft").error(f"at most hard ({hard})", pair["soft"])
        else:
            soft = hard = _ulimit_value(limit, where)
        limits.append(objects.Ulimit(name=name, soft=soft, hard=hard))
    return limits


_HOST = re.compile(r"[a-zA-Z0-9_]([a-zA-Z0-9_.-]*[a-zA-Z0-9_])?")


def _extra_hosts(value: object, at: _At) -> list[str]:
    """HOST:IP, HOST=IP or a mapping HOST: IP (or a list of IPs) -> ["HOST:IP", ...]."""
    pairs: list[tuple[object, object, _At]] = []
    if isinstance(value, dict):
        for host, ips in value.items():
            for ip in ips if isinstance(ips, list) else [ips]:
                pairs.append((host, ip, at.sub(str(host))))
    elif isinstance(value, list):
        for i, entry in enumerate(value):
            if not isinstance(entry, str) or not re.search("[:=]", entry):
                raise at.sub(i).error("'HOST:IP' or 'HOST=IP'", entry)
            sep = "=" if "=" in entry else ":"
            host, _, ip = entry.partition(sep)
            pairs.append((host, ip.strip("[]"), at.sub(i)))
    else:
        raise at.error("a list of 'HOST:IP' or a mapping HOST: IP", value)
    hosts = []
    for host, ip, where in pairs:
        if not isinstance(host, str) or not _HOST.fullmatch(host):
            raise where.error("a host name", host)
        hosts.append(f"{host}:{_ip(ip, where, extra=('host-gateway',))}")
    return hosts


def _expose(value: object, at: _At) -> list[str]:
    if not isinstance(value, list):
        raise at.error("a list of ports such as 80, '8080/tcp' or '9000-9010/udp'", value)
    exposed = []
    for i, item in enumerate(value):
        where = at.sub(i)
        if isinstance(item, bool) or not isinstance(item, str | int):
            raise where.error("a port such as 80, '8080/tcp' or '9000-9010/udp'", item)
        ports, _, protocol = str(item).partition("/")
        span = _port_range(ports, where)
        proto = _choice(protocol or "tcp", ("tcp", "udp"), where)
        text = str(span.start) if len(span) == 1 else f"{span.start}-{span.stop - 1}"
        exposed.append(f"{text}/{proto}")
    return exposed


_RESTART = "'no', 'always', 'on-failure', 'on-failure:N' or 'unless-stopped'"


def _restart(value: object, at: _At) -> objects.RestartPolicy:
    """Compose's restart -> the restart policy `docker run --restart` means."""
    policy = objects.RestartPolicy
    if value is False or value == "no":  # YAML 1.2 reads `no` as a string; `false` as False
        return policy(condition=policy.CONDITION_NONE)
    if value in ("always", "unless-stopped"):
        return policy(condition=policy.CONDITION_ANY)
    match = re.fullmatch(r"on-failure(?::([0-9]+))?", value) if isinstance(value, str) else None
    if match is None:
        raise at.error(_RESTART, value)
    return policy(condition=policy.CONDITION_ON_FAILURE, max_attempts=int(match[1] or 0))


def _env_files(value: object, at: _At, directory: pathlib.Path) -> dict[str, str]:
    entries = value if isinstance(value, list) else [value]
    env: dict[str, str] = {}
    for i, entry in enumerate(entries):
        where = at.sub(i) if isinstance(value, list) else at
        required = True
        if isinstance(entry, dict):
            data = _mapping(entry, where, "env_file[]")
            entry, required = data.get("path"), _flag(data.get("required", True),
                                                      where.sub("required"))
        if not isinstance(entry, str) or not entry:
            raise where.error("a path, a list of paths, or {path, required}", entry)
        path = directory / entry
        try:
            text = path.read_text()
        except FileNotFoundError:
            if not required:
                continue
            raise SpecError(f"{where}: cannot read {str(path)!r}: no such file") from None
        except (OSError, UnicodeDecodeError) as err:
            reason = err.strerror if isinstance(err, OSError) else "not UTF-8 text"
            raise SpecError(f"{where}: cannot read {str(path)!r}: {reason}") from None
        env.update(_dotenv(text, where, entry))
    return env


_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


def _dotenv(text: str, at: _At, name: str) -> dict[str, str]:
    env = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, rest = line.removeprefix("export ").partition("=")
        key = key.strip()
        if not _ENV_KEY.fullmatch(key):
            raise SpecError(f"{at}: {name} line {number}: expected KEY=VALUE, got {raw!r}")
        rest = rest.strip()
        if len(rest) >= 2 and rest[0] == rest[-1] and rest[0] in "'\"":
            rest = rest[1:-1]
        else:  # an unquoted value ends at " #"
            rest = re.split(r"\s+#", rest, maxsplit=1)[0]
        env[key] = rest
    return env


_CONDITIONS = ("service_started", "service_healthy", "service_completed_successfully")


def _depends_on(value: object, at: _At, names: frozenset[str]) -> None:
    if isinstance(value, list):
        deps = value
    elif isinstance(value, dict):
        deps = list(value)
        for dep, options in value.items():
            where = at.sub(str(dep))
            data = _mapping(options, where, "depends_on.*")
            if "condition" in data:
                _choice(data["condition"], _CONDITIONS, where.sub("condition"))
            for key in ("required", "restart"):
                if key in data:
                    _flag(data[key], where.sub(key))
    else:
        raise at.error("a list of services or a mapping SERVICE: {condition}", value)
    for dep in deps:
        if not isinstance(dep, str) or dep not in names:
            raise at.error(f"services of this file ({', '.join(sorted(names))})", dep)
