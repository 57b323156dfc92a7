"""Compose volumes: the top-level `volumes:`, and each service's `volumes:` and `tmpfs:`.

`stack_volumes(document, scope)` reads the top level: Compose key -> the volume as mounted,
named `SCOPE_KEY` (the stack's own volume; `KEY` without a stack), or the `name:` given as-is;
`external: true` uses the name as written (or its `name:`), a volume that must already exist on
the node (its mounts are marked `external`, which the agent checks), and takes no
driver, driver_opts or labels. `driver`, `driver_opts` and `labels` go
into every mount of the volume (the engine creates it on first use with them).
`x-podium-may-move: true` sets may_move on its mounts: a replica using it may start on another
node, with what that node's volume holds, when its node is down (by default it waits).

`set_mounts(data, spec, at, volumes, directory, warnings)` reads one service:
- `volumes:` short syntax `SOURCE:TARGET[:MODE]` or `TARGET`. A SOURCE starting with `/`, `.`
  or `~` is a bind mount (relative to `directory`, the Compose file's folder, resolved now), and
  as in Compose it may create its host path; another SOURCE is a volume of the top level; a
  lone TARGET is an anonymous volume. MODE is a comma list of ro, rw, nocopy (volumes),
  a propagation (binds) and z/Z (ignored with a warning: SELinux relabelling).
- `volumes:` long syntax {type: volume|bind|tmpfs, source, target, read_only, volume {nocopy},
  bind {propagation, create_host_path}, tmpfs {size, mode}}; `consistency` and bind.selinux are
  ignored with a warning. A long-syntax bind does not create its host path unless
  create_host_path says so: a missing path fails the task.
- `tmpfs:` a path or a list of paths, each optionally `PATH:size=64m,mode=1777`.
A tmpfs mode is octal digits (1777, "0755", "0o755"). A volume not declared at the top level,
an unknown key or a bad value is an error naming the service, the key and what is accepted;
the mounts are then checked by podium.rules.mounts, as the control API checks them.
"""

from __future__ import annotations

import os
import pathlib
import posixpath
from dataclasses import dataclass, field

from podium.client.compose import (
    SpecError,
    _At,
    _choice,
    _show,
    _string_map,
    parse_bytes,
)
from podium.rules.mounts import (
    PROPAGATIONS,
    VOLUME_NAME_RULE,
    check_mounts,
    is_valid_volume_name,
)
from podium.v1 import objects

__all__ = ["Volume", "set_mounts", "stack_volumes"]

MAY_MOVE_KEY = "x-podium-may-move"
_TOP_KEYS = ("driver", "driver_opts", "external", "labels", "name", MAY_MOVE_KEY)
_LONG_KEYS = ("bind", "consistency", "read_only", "source", "target", "tmpfs", "type", "volume")
_TYPES = {"volume": objects.Mount.TYPE_VOLUME, "bind": objects.Mount.TYPE_BIND,
          "tmpfs": objects.Mount.TYPE_TMPFS}  # fmt: skip
_SHORT = "'VOLUME:/path[:ro]', './dir:/path', '/host/dir:/path[:ro]' or '/path'"
_SELINUX = "SELinux relabelling is left to the node's engine configuration"


@dataclass(frozen=True, slots=True)
class Volume:
    """A top-level volume: its name on the nodes and what its mounts carry."""

    name: str
    driver: str = ""
    driver_options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    may_move: bool = False
    external: bool = False


def stack_volumes(document: dict[object, object], scope: str) -> dict[str, Volume]:
    """Compose volume key -> Volume, for the file's top-level `volumes:`."""
    value = document.get("volumes") or {}
    if not isinstance(value, dict):
        raise SpecError(f"volumes: expected a mapping of volume names, got {_show(value)}")
    table: dict[str, Volume] = {}
    for key, config in value.items():
        where = f"volumes.{key}"
        if not isinstance(key, str) or not is_valid_volume_name(key):
            raise SpecError(f"volumes: invalid volume name {_show(key)}: use {VOLUME_NAME_RULE}")
        config = config or {}
        if not isinstance(config, dict):
            raise SpecError(f"{where}: expected a mapping (or nothing), got {_show(config)}")
        for option in config:
            if option not in _TOP_KEYS and not str(option).startswith("x-"):
                raise SpecError(f"{where}: key {option!r} is not supported by Podium "
                                f"(supported: {', '.join(_TOP_KEYS)})")
        external = _flag(config.get("external", False), f"{where}.external")
        may_move = _flag(config.get(MAY_MOVE_KEY, False), f"{where}.{MAY_MOVE_KEY}")
        name = config.get("name")
        if name is not None and not (isinstance(name, str) and is_valid_volume_name(name)):
            raise SpecError(f"{where}.name: invalid volume name {_show(name)}: "
                            f"use {VOLUME_NAME_RULE}")
        if external:
            extra = [k for k in ("driver", "driver_opts", "labels") if k in config]
            if extra:
                raise SpecError(f"{where}: an external volume exists already: remove "
                                f"{', '.join(extra)} (or external)")
        driver = config.get("driver", "")
        if not isinstance(driver, str):
            raise SpecError(f"{where}.driver: expected a driver name, got {_show(driver)}")
        at = _At(f"volume {key}")
        labels = _string_map(config.get("labels", {}), at.sub("labels"))
        table[key] = Volume(
            name=name or (key if external else _scoped(scope, key)),
            driver=driver,
            driver_options=_string_map(config.get("driver_opts", {}), at.sub("driver_opts")),
            labels=labels,
            external=external,
            may_move=may_move,
        )
    return table


def _flag(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"{where}: expected true or false, got {_show(value)}")
    return value


def _scoped(scope: str, key: str) -> str:
    return f"{scope}_{key}" if scope else key


def set_mounts(data: dict[str, object], spec: objects.ServiceSpec, at: _At,
               volumes: dict[str, Volume], directory: pathlib.Path,
               warnings: list[str]) -> None:
    """The service's `volumes:` and `tmpfs:` into spec.container.mounts."""
    mounts = spec.container.mounts
    value = data.get("volumes", [])
    where = at.sub("volumes")
    if not isinstance(value, list):
        raise where.error(f"a list of mounts ({_SHORT}, or mappings with type and target)",
                          value)
    for i, item in enumerate(value):
        if isinstance(item, str):
            mounts.append(_short(item, where.sub(i), volumes, directory, warnings))
        elif isinstance(item, dict):
            mounts.append(_long(item, where.sub(i), volumes, directory, warnings))
        else:
            raise where.sub(i).error(f"{_SHORT}, or a mapping with type and target", item)
    tmpfs = data.get("tmpfs", [])
    paths = [tmpfs] if isinstance(tmpfs, str) else tmpfs
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise at.sub("tmpfs").error("a path or a list of paths", tmpfs)
    for i, path in enumerate(paths):
        mounts.append(_short_tmpfs(path, at.sub("tmpfs").sub(i) if paths is tmpfs
                                   else at.sub("tmpfs")))
    if problem := check_mounts(spec):
        raise SpecError(f"service {at.service!r}: {problem}")


def _target(value: object, at: _At) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise at.error("an absolute path in the container", value)
    return value


def _named(source: str, at: _At, volumes: dict[str, Volume]) -> objects.Mount:
    volume = volumes.get(source)
    if volume is None:
        declared = f" (declared: {', '.join(sorted(volumes))})" if volumes else ""
        raise SpecError(f"{at}: volume {source!r} is not declared in the top-level `volumes:`"
                        f"{declared}: add `{source}:` under `volumes:` at the top of the file")
    return objects.Mount(type=objects.Mount.TYPE_VOLUME, source=volume.name,
                         driver=volume.driver, driver_options=volume.driver_options,
                         labels=volume.labels, may_move=volume.may_move,
                         external=volume.external)


def _host_path(source: str, directory: pathlib.Path) -> str:
    path = os.path.expanduser(source) if source.startswith("~") else source
    if not path.startswith("/"):
        path = str(directory.absolute() / path)
    return posixpath.normpath(path)


def _is_path(source: str) -> bool:
    return source.startswith(("/", ".", "~"))


def _short(item: str, at: _At, volumes: dict[str, Volume], directory: pathlib.Path,
           warnings: list[str]) -> objects.Mount:
    parts = item.split(":")
    if len(parts) == 1:  # an anonymous volume
        return objects.Mount(type=objects.Mount.TYPE_VOLUME, target=_target(item, at))
    if len(parts) > 3 or not parts[0]:
        raise at.error(_SHORT, item)
    source, target = parts[0], _target(parts[1], at)
    if _is_path(source):
        mount = objects.Mount(type=objects.Mount.TYPE_BIND, source=_host_path(source, directory),
                              create_host_path=True)
    else:
        mount = _named(source, at, volumes)
    mount.target = target
    modes = parts[2].split(",") if len(parts) == 3 else []
    for mode in modes:
        if mode in ("ro", "rw"):
            mount.read_only = mode == "ro"
        elif mode == "nocopy" and mount.type == objects.Mount.TYPE_VOLUME:
            mount.no_copy = True
        elif mode in PROPAGATIONS and mount.type == objects.Mount.TYPE_BIND:
            mount.propagation = mode
        elif mode in ("z", "Z"):
            warnings.append(f"{at}: ignoring mode {mode}: {_SELINUX}")
        else:
            accepted = ("ro, rw, " + ("nocopy" if mount.type == objects.Mount.TYPE_VOLUME
                                      else ", ".join(PROPAGATIONS)))
            raise SpecError(f"{at}: mode {mode!r} in {item!r}: expected {accepted}")
    return mount


def _long(item: dict[object, object], at: _At, volumes: dict[str, Volume],
          directory: pathlib.Path, warnings: list[str]) -> objects.Mount:
    for key in item:
        if key not in _LONG_KEYS and not str(key).startswith("x-"):
            raise SpecError(f"{at}: key {key!r} is not supported by Podium "
                            f"(supported: {', '.join(_LONG_KEYS)})")
    if "type" not in item or "target" not in item:
        raise SpecError(f"{at}: 'type' and 'target' are required in the long volume syntax")
    kind = _choice(item["type"], _TYPES, at.sub("type"))
    for own in ("volume", "bind", "tmpfs"):
        if own in item and own != kind:
            raise SpecError(f"{at.sub(own)}: only for type {own}, not {kind}")
    source = item.get("source", "")
    if not isinstance(source, str):
        raise at.sub("source").error("a string", source)
    if kind == "volume":
        mount = _named(source, at.sub("source"), volumes) if source else objects.Mount()
        options = _options(item, "volume", ("nocopy",), at)
        mount.no_copy = _flag(options.get("nocopy", False), str(at.sub("volume").sub("nocopy")))
    elif kind == "bind":
        if not source:
            raise SpecError(f"{at.sub('source')}: a bind mount needs the path on the node")
        mount = objects.Mount(type=objects.Mount.TYPE_BIND, source=_host_path(source, directory))
        options = _options(item, "bind", ("create_host_path", "propagation", "selinux"), at)
        where = at.sub("bind")
        mount.create_host_path = _flag(options.get("create_host_path", False),
                                       str(where.sub("create_host_path")))
        if "propagation" in options:
            mount.propagation = _choice(options["propagation"], PROPAGATIONS,
                                        where.sub("propagation"))
        if "selinux" in options:
            warnings.append(f"{where.sub('selinux')}: ignoring it: {_SELINUX}")
    else:
        if source:
            raise SpecError(f"{at.sub('source')}: a tmpfs has no source: remove it")
        mount = objects.Mount(type=objects.Mount.TYPE_TMPFS)
        options = _options(item, "tmpfs", ("mode", "size"), at)
        if "size" in options:
            mount.tmpfs_size_bytes = parse_bytes(options["size"],
                                                 where=str(at.sub("tmpfs").sub("size")))
        if "mode" in options:
            mount.tmpfs_mode = _mode(options["mode"], at.sub("tmpfs").sub("mode"))
    if "consistency" in item:
        warnings.append(f"{at.sub('consistency')}: ignoring it: it only tunes Docker Desktop's "
                        "file sharing")
    mount.target = _target(item["target"], at.sub("target"))
    mount.read_only = _flag(item.get("read_only", False), str(at.sub("read_only")))
    return mount


def _options(item: dict[object, object], kind: str, keys: tuple[str, ...],
             at: _At) -> dict[str, object]:
    value = item.get(kind) or {}
    where = at.sub(kind)
    if not isinstance(value, dict):
        raise where.error(f"a mapping with {', '.join(keys)}", value)
    for key in value:
        if key not in keys:
            raise SpecError(f"{where}: key {key!r} is not supported by Podium "
                            f"(supported: {', '.join(keys)})")
    return value


def _mode(value: object, at: _At) -> int:
    """Octal permission bits written as digits: 1777, "0755", "0o755"."""
    text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
    digits = text.removeprefix("0o")
    if not digits or not all(c in "01234567" for c in digits) or int(digits, 8) > 0o7777:
        raise at.error("an octal mode such as 1777 or '0755'", value)
    return int(digits, 8)


def _short_tmpfs(item: str, at: _At) -> objects.Mount:
    path, _, options = item.partition(":")
    mount = objects.Mount(type=objects.Mount.TYPE_TMPFS, target=_target(path, at))
    for option in filter(None, options.split(",")):
        key, _, setting = option.partition("=")
        if key == "size":
            mount.tmpfs_size_bytes = parse_bytes(setting, where=f"{at}: size")
        elif key == "mode":
            mount.tmpfs_mode = _mode(setting, at)
        elif key in ("rw", "ro"):
            mount.read_only = key == "ro"
        else:
            raise SpecError(f"{at}: option {option!r} in {item!r}: expected size=SIZE, "
                            "mode=OCTAL, ro or rw")
    return mount
