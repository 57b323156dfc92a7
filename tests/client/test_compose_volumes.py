"""Compose volumes: top-level `volumes:`, service `volumes:` (short and long) and `tmpfs:`."""

from __future__ import annotations

import pathlib

import pytest

from podium.client.compose import SpecError, read_stack
from podium.v1 import objects

VOLUME = objects.Mount.TYPE_VOLUME
BIND = objects.Mount.TYPE_BIND
TMPFS = objects.Mount.TYPE_TMPFS
HERE = pathlib.Path("/srv/shop")


def _mounts(text: str, **kwargs: object) -> list[objects.Mount]:
    kwargs.setdefault("directory", HERE)
    stack = read_stack(text, source="stack.yml", **kwargs)  # type: ignore[arg-type]
    return list(stack.services[0].container.mounts)


def _error(text: str) -> str:
    with pytest.raises(SpecError) as info:
        read_stack(text, source="stack.yml", directory=HERE)
    return str(info.value)


def test_short_syntax() -> None:
    mounts = _mounts("""
services:
  db:
    image: pg
    volumes: [data:/var/lib/pg, "data:/ro:ro", ./conf:/etc/pg, "/etc/ssl:/ssl:ro,rslave", /anon,
              "data:/nc:nocopy"]
volumes: {data: }
""", fallback_stack="shop")
    assert mounts == [
        objects.Mount(type=VOLUME, source="shop_data", target="/var/lib/pg"),
        objects.Mount(type=VOLUME, source="shop_data", target="/ro", read_only=True),
        objects.Mount(type=BIND, source="/srv/shop/conf", target="/etc/pg",
                      create_host_path=True),
        objects.Mount(type=BIND, source="/etc/ssl", target="/ssl", read_only=True,
                      propagation="rslave", create_host_path=True),
        objects.Mount(type=VOLUME, target="/anon"),
        objects.Mount(type=VOLUME, source="shop_data", target="/nc", no_copy=True),
    ]


def test_volume_names_follow_the_stack_the_name_key_and_external() -> None:
    text = """
name: shop
services:
  db:
    image: pg
    volumes: [a:/a, b:/b, c:/c]
volumes:
  a:
  b: {name: shared-cache}
  c: {external: true}
"""
    mounts = _mounts(text)
    assert [m.source for m in mounts] == ["shop_a", "shared-cache", "c"]
    # An external volume must exist on the node: the agent checks for it.
    assert [m.external for m in mounts] == [False, False, True]
    nameless = text.replace("name: shop\n", "")
    assert [m.source for m in _mounts(nameless)] == ["a", "shared-cache", "c"]


def test_driver_options_labels_and_may_move_reach_the_mounts() -> None:
    [mount] = _mounts("""
services:
  db: {image: pg, volumes: [data:/data]}
volumes:
  data:
    driver: local
    driver_opts: {type: none, o: bind, device: /mnt/disk}
    labels: [team=shop]
    x-podium-may-move: true
""")
    assert mount == objects.Mount(
        type=VOLUME, source="data", target="/data", driver="local",
        driver_options={"type": "none", "o": "bind", "device": "/mnt/disk"},
        labels={"team": "shop"}, may_move=True)


def test_long_syntax_and_tmpfs() -> None:
    mounts = _mounts("""
services:
  db:
    image: pg
    volumes:
      - {type: volume, source: data, target: /data, read_only: true, volume: {nocopy: true}}
      - {type: volume, target: /anon}
      - type: bind
        source: ./site
        target: /site
        bind: {propagation: rshared, create_host_path: true}
      - {type: bind, source: /srv/missing, target: /m}
      - {type: tmpfs, target: /run/a, tmpfs: {size: 64m, mode: 1777}}
    tmpfs: [/tmp, "/run/b:size=1k,mode=0700"]
volumes: {data: {}}
""")
    assert mounts == [
        objects.Mount(type=VOLUME, source="data", target="/data", read_only=True, no_copy=True),
        objects.Mount(type=VOLUME, target="/anon"),
        objects.Mount(type=BIND, source="/srv/shop/site", target="/site",
                      propagation="rshared", create_host_path=True),
        objects.Mount(type=BIND, source="/srv/missing", target="/m"),
        objects.Mount(type=TMPFS, target="/run/a", tmpfs_size_bytes=64 << 20,
                      tmpfs_mode=0o1777),
        objects.Mount(type=TMPFS, target="/tmp"),
        objects.Mount(type=TMPFS, target="/run/b", tmpfs_size_bytes=1024, tmpfs_mode=0o700),
    ]
    assert _mounts("services: {w: {image: x, tmpfs: /run}}") == [
        objects.Mount(type=TMPFS, target="/run")]


def test_ignored_options_warn() -> None:
    stack = read_stack("""
services:
  w:
    image: x
    volumes: ["./a:/a:z", {type: bind, source: /b, target: /b, consistency: cached}]
""", directory=HERE)
    assert stack.warnings == [
        "service 'w': volumes[0]: ignoring mode z: SELinux relabelling is left to the node's "
        "engine configuration",
        "service 'w': volumes[1].consistency: ignoring it: it only tunes Docker Desktop's file "
        "sharing",
    ]


@pytest.mark.parametrize(
    ("service", "top", "expected"),
    [
        ("volumes: [data:/data]", "",
         "service 'w': volumes[0]: volume 'data' is not declared in the top-level `volumes:`: "
         "add `data:` under `volumes:` at the top of the file"),
        ("volumes: [data:/data]", "volumes: {other: }",
         "service 'w': volumes[0]: volume 'data' is not declared in the top-level `volumes:` "
         "(declared: other)"),
        ("volumes: [data:relative]", "volumes: {data: }",
         "service 'w': volumes[0]: expected an absolute path in the container, got 'relative'"),
        ("volumes: ['data:/d:rslave']", "volumes: {data: }",
         "service 'w': volumes[0]: mode 'rslave' in 'data:/d:rslave': expected ro, rw, nocopy"),
        ("volumes: [a:b:c:d]", "", "service 'w': volumes[0]: expected 'VOLUME:/path[:ro]'"),
        ("volumes: [{type: nfs, target: /x}]", "",
         "service 'w': volumes[0].type: expected 'volume' or 'bind' or 'tmpfs', got 'nfs'"),
        ("volumes: [{type: bind, target: /x}]", "",
         "service 'w': volumes[0].source: a bind mount needs the path on the node"),
        ("volumes: [{type: tmpfs, source: x, target: /x}]", "",
         "service 'w': volumes[0].source: a tmpfs has no source: remove it"),
        ("volumes: [{type: tmpfs, target: /x, bind: {propagation: shared}}]", "",
         "service 'w': volumes[0].bind: only for type bind, not tmpfs"),
        ("volumes: [{type: bind, source: /a, target: /x, bind: {propagation: up}}]", "",
         "service 'w': volumes[0].bind.propagation: expected 'rprivate' or 'private'"),
        ("volumes: [{type: bind, source: /a, target: /x, bind: {recursive: x}}]", "",
         "service 'w': volumes[0].bind: key 'recursive' is not supported by Podium (supported: "
         "create_host_path, propagation, selinux)"),
        ("volumes: [{type: volume, target: /x, size: 1}]", "",
         "service 'w': volumes[0]: key 'size' is not supported by Podium"),
        ("volumes: [{type: tmpfs, target: /x, tmpfs: {mode: 999}}]", "",
         "service 'w': volumes[0].tmpfs.mode: expected an octal mode such as 1777"),
        ("volumes: [/a, /a]", "",
         "service 'w': spec.container.mounts[1].target '/a': mounts[0] already mounts there"),
        ("tmpfs: [/run:uid=1]", "", "service 'w': tmpfs[0]: option 'uid=1' in '/run:uid=1'"),
        ("volumes: {data: /d}", "", "service 'w': volumes: expected a list of mounts"),
        ("init: false", "volumes: {data: {driver_opts: {}, type: x}}",
         "volumes.data: key 'type' is not supported by Podium (supported: driver, driver_opts,"),
        ("init: false", "volumes: {data: {external: true, driver: local}}",
         "volumes.data: an external volume exists already: remove driver (or external)"),
        ("init: false", "volumes: {data: {x-podium-may-move: yes}}",
         "volumes.data.x-podium-may-move: expected true or false, got 'yes'"),
    ],
)
def test_errors_name_the_service_key_and_what_is_accepted(service: str, top: str,
                                                          expected: str) -> None:
    text = f"services:\n  w:\n    image: x\n    {service}\n{top}\n"
    assert _error(text).startswith(f"stack.yml: {expected}")
