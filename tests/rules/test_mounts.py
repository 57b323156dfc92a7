"""Mount validation shared by the Compose parser and the control API, and which mounts pin."""

from __future__ import annotations

import pytest

from podium.rules.mounts import check_mounts, pinning_volume
from podium.v1 import objects

VOLUME = objects.Mount.TYPE_VOLUME
BIND = objects.Mount.TYPE_BIND
TMPFS = objects.Mount.TYPE_TMPFS


def _spec(*mounts: objects.Mount) -> objects.ServiceSpec:
    spec = objects.ServiceSpec(name="web")
    spec.container.mounts.extend(mounts)
    return spec


def test_valid_mounts_pass() -> None:
    assert check_mounts(_spec(
        objects.Mount(type=VOLUME, source="shop_data", target="/data", driver="local",
                      no_copy=True),
        objects.Mount(type=VOLUME, target="/anon"),
        objects.Mount(type=BIND, source="/srv", target="/srv", propagation="rslave"),
        objects.Mount(type=TMPFS, target="/tmp", tmpfs_size_bytes=1024, tmpfs_mode=0o1777),
    )) is None


@pytest.mark.parametrize(
    ("mount", "expected"),
    [
        (objects.Mount(target="data"),
         "spec.container.mounts[0].target 'data': expected an absolute path in the container"),
        (objects.Mount(type=BIND, source="srv", target="/x"),
         "spec.container.mounts[0].source 'srv': expected an absolute path on the node"),
        (objects.Mount(type=TMPFS, source="x", target="/x"),
         "spec.container.mounts[0].source 'x': a tmpfs has no source; leave it empty"),
        (objects.Mount(type=VOLUME, source="a/b", target="/x"),
         "spec.container.mounts[0].source 'a/b': expected a volume name"),
        (objects.Mount(type=BIND, source="/a", target="/x", propagation="up"),
         "spec.container.mounts[0].propagation 'up': expected one of rprivate, private, "
         "rshared, shared, rslave, slave"),
        (objects.Mount(type=VOLUME, target="/x", propagation="shared"),
         "spec.container.mounts[0].propagation: only for bind mounts, not volume"),
        (objects.Mount(type=BIND, source="/a", target="/x", no_copy=True),
         "spec.container.mounts[0].no_copy: only for volume mounts, not bind"),
        (objects.Mount(type=VOLUME, target="/x", tmpfs_mode=0o700),
         "spec.container.mounts[0].tmpfs_mode: only for tmpfs mounts, not volume"),
        (objects.Mount(type=TMPFS, target="/x", tmpfs_size_bytes=-1),
         "spec.container.mounts[0].tmpfs_size_bytes -1: expected a size >= 0"),
    ],
)
def test_errors_name_the_field_and_what_is_accepted(mount: objects.Mount, expected: str) -> None:
    problem = check_mounts(_spec(mount))
    assert problem is not None and problem.startswith(expected), problem


def test_targets_are_unique() -> None:
    problem = check_mounts(_spec(objects.Mount(target="/d"), objects.Mount(target="/d/")))
    assert problem == ("spec.container.mounts[1].target '/d/': mounts[0] already mounts there; "
                       "give each mount its own path")


def test_only_named_local_volumes_that_may_not_move_pin() -> None:
    assert pinning_volume(_spec(objects.Mount(source="shop_data", target="/d"))) == "shop_data"
    assert pinning_volume(_spec(objects.Mount(source="d", target="/d", driver="local"))) == "d"
    for mount in (objects.Mount(target="/anon"),
                  objects.Mount(source="d", target="/d", may_move=True),
                  objects.Mount(source="d", target="/d", driver="nfs"),
                  objects.Mount(type=BIND, source="/srv", target="/d"),
                  objects.Mount(type=TMPFS, target="/d")):
        assert pinning_volume(_spec(mount)) is None


def test_the_control_api_refuses_a_bad_mount_naming_the_service_and_field() -> None:
    import grpc

    from podium.manager.controlapi import RequestError, validate_spec

    spec = _spec(objects.Mount(type=BIND, source="relative", target="/x"))
    spec.container.image = "img"
    with pytest.raises(RequestError) as info:
        validate_spec(spec)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert str(info.value) == ("service 'web': spec.container.mounts[0].source 'relative': "
                               "expected an absolute path on the node")
