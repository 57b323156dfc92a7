"""Mounts of a service's containers: what a valid one is, and which ones pin a replica to a node.

`check_mounts(spec)` returns what is wrong with ``spec.container.mounts`` naming the field and
what is accepted (None when nothing): the client's Compose parser and the control API both call
it, so a file is refused before deploy with the same words the API would use.
- every target is an absolute path, and no two mounts share one;
- a volume's source is a name (empty: anonymous), a bind's an absolute path, a tmpfs has none;
- fields of one type only on that type: driver, driver_options, labels, no_copy, may_move,
  external on volumes; create_host_path, propagation on binds; tmpfs_size_bytes, tmpfs_mode on
  tmpfs;
- propagation is one of PROPAGATIONS; the tmpfs mode fits in 0o7777 and its size is >= 0.

A volume that Compose declared `external` (Mount.external) must exist on the node already (the
agent checks before creating the container: the engine would otherwise create it empty).

`pinning_volume(spec)` is the named volume with the local driver that may not move (the first
one), or None. A replica holding such a volume keeps its data on one node: the scheduler pins
its slot to the node it first ran on (Task.pinned_node).
"""

from __future__ import annotations

import posixpath
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the daemons' argument parsing imports rules: no protobuf at run time
    from podium.v1 import objects

PROPAGATIONS = ("rprivate", "private", "rshared", "shared", "rslave", "slave")
LOCAL_DRIVERS = ("", "local")
# A volume name as the engine accepts it.
VOLUME_NAME_RULE = "letters, digits, '_', '.' and '-', starting with a letter or digit"
_VOLUME_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")

# Type numbers of objects.Mount.Type (kept here so the module needs no protobuf at import).
VOLUME, BIND, TMPFS = 0, 1, 2
_TYPE_NAMES = {VOLUME: "volume", BIND: "bind", TMPFS: "tmpfs"}
_ONLY_ON = {
    "driver": VOLUME, "driver_options": VOLUME, "labels": VOLUME, "no_copy": VOLUME,
    "may_move": VOLUME, "external": VOLUME, "create_host_path": BIND, "propagation": BIND,
    "tmpfs_size_bytes": TMPFS, "tmpfs_mode": TMPFS,
}  # fmt: skip


def is_valid_volume_name(name: str) -> bool:
    return bool(_VOLUME_NAME.fullmatch(name))


def check_mounts(spec: objects.ServiceSpec) -> str | None:
    """What is wrong with the service's mounts, naming the field; None when nothing."""
    targets: dict[str, int] = {}
    for i, mount in enumerate(spec.container.mounts):
        field = f"spec.container.mounts[{i}]"
        kind = int(mount.type)
        if kind not in _TYPE_NAMES:
            return f"{field}.type {kind}: expected volume, bind or tmpfs"
        if not mount.target.startswith("/"):
            return f"{field}.target {mount.target!r}: expected an absolute path in the container"
        target = posixpath.normpath(mount.target)
        if target in targets:
            return (f"{field}.target {mount.target!r}: mounts[{targets[target]}] already mounts "
                    "there; give each mount its own path")
        targets[target] = i
        for name, only in _ONLY_ON.items():
            value = getattr(mount, name)
            if only != kind and value:
                return (f"{field}.{name}: only for {_TYPE_NAMES[only]} mounts, "
                        f"not {_TYPE_NAMES[kind]}")
        if kind == VOLUME and mount.source and not is_valid_volume_name(mount.source):
            return (f"{field}.source {mount.source!r}: expected a volume name "
                    f"({VOLUME_NAME_RULE}), or nothing for an anonymous volume")
        if kind == BIND and not mount.source.startswith("/"):
            return f"{field}.source {mount.source!r}: expected an absolute path on the node"
        if kind == TMPFS and mount.source:
            return f"{field}.source {mount.source!r}: a tmpfs has no source; leave it empty"
        if mount.propagation and mount.propagation not in PROPAGATIONS:
            return (f"{field}.propagation {mount.propagation!r}: expected one of "
                    f"{', '.join(PROPAGATIONS)}")
        if mount.tmpfs_size_bytes < 0:
            return f"{field}.tmpfs_size_bytes {mount.tmpfs_size_bytes}: expected a size >= 0"
        if mount.tmpfs_mode > 0o7777:
            return f"{field}.tmpfs_mode {mount.tmpfs_mode:o}: expected an octal mode up to 7777"
    return None


def pinning_volume(spec: objects.ServiceSpec) -> str | None:
    """The first named local volume that may not move, whose data keeps a replica on its node."""
    for mount in spec.container.mounts:
        if (mount.type == VOLUME and mount.source and mount.driver in LOCAL_DRIVERS
                and not mount.may_move):
            return mount.source
    return None
