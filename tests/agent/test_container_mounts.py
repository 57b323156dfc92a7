"""A task's mounts in the create body (HostConfig.Mounts / Binds), and the missing-bind error."""

from __future__ import annotations

from podium.agent._container import bind_source_missing, container_config, external_volumes
from podium.v1 import objects

VOLUME = objects.Mount.TYPE_VOLUME
BIND = objects.Mount.TYPE_BIND
TMPFS = objects.Mount.TYPE_TMPFS


def _task(*mounts: objects.Mount) -> objects.Task:
    task = objects.Task(id="t1", service_id="s1", service_name="web", slot=1)
    task.spec.container.image = "img:1"
    task.spec.container.mounts.extend(mounts)
    return task


def test_no_mounts_leave_the_body_without_mounts() -> None:
    host = container_config(_task(), "n1")["HostConfig"]
    assert "Mounts" not in host and "Binds" not in host


def test_each_type_maps_onto_the_engine_fields() -> None:
    mounts = (
        objects.Mount(type=VOLUME, source="shop_data", target="/data", read_only=True,
                      driver="local", driver_options={"type": "tmpfs", "device": "tmpfs"},
                      labels={"io.podium.stack": "shop"}, no_copy=True),
        objects.Mount(type=VOLUME, target="/cache"),
        objects.Mount(type=BIND, source="/srv/conf", target="/etc/app", read_only=True,
                      propagation="rslave"),
        objects.Mount(type=TMPFS, target="/run/x", tmpfs_size_bytes=1 << 20, tmpfs_mode=0o700),
    )
    assert container_config(_task(*mounts), "n1")["HostConfig"]["Mounts"] == [
        {"Type": "volume", "Source": "shop_data", "Target": "/data", "ReadOnly": True,
         "VolumeOptions": {"NoCopy": True, "Labels": {"io.podium.stack": "shop"},
                           "DriverConfig": {"Name": "local",
                                            "Options": {"device": "tmpfs", "type": "tmpfs"}}}},
        {"Type": "volume", "Target": "/cache"},
        {"Type": "bind", "Source": "/srv/conf", "Target": "/etc/app", "ReadOnly": True,
         "BindOptions": {"Propagation": "rslave"}},
        {"Type": "tmpfs", "Target": "/run/x",
         "TmpfsOptions": {"SizeBytes": 1 << 20, "Mode": 0o700}},
    ]


def test_a_bind_that_may_create_its_path_is_a_binds_entry() -> None:
    mounts = (objects.Mount(type=BIND, source="/srv/a", target="/a", create_host_path=True),
              objects.Mount(type=BIND, source="/srv/b", target="/b", create_host_path=True,
                            read_only=True, propagation="shared"))
    host = container_config(_task(*mounts), "n1")["HostConfig"]
    assert host["Binds"] == ["/srv/a:/a", "/srv/b:/b:ro,shared"]
    assert "Mounts" not in host


def test_mounts_already_in_the_body_are_kept() -> None:
    from podium.agent._container import add_mounts

    host: dict[str, object] = {"Mounts": [{"Type": "bind", "Source": "/s", "Target": "/t"}]}
    add_mounts(_task(objects.Mount(type=TMPFS, target="/tmp")).spec.container, host)
    assert host["Mounts"] == [{"Type": "bind", "Source": "/s", "Target": "/t"},
                              {"Type": "tmpfs", "Target": "/tmp"}]


def test_the_engine_refusing_a_missing_bind_source_is_recognised() -> None:
    message = ('invalid mount config for type "bind": bind source path does not exist: '
               "/srv/x")
    assert bind_source_missing(message) == "/srv/x"
    assert bind_source_missing("No such image: x") is None


def test_external_volumes_are_listed_for_the_check() -> None:
    external = objects.Mount(type=VOLUME, source="pgdata", target="/data", external=True)
    own = objects.Mount(type=VOLUME, source="shop_cache", target="/cache")
    task = _task(external, own)
    assert external_volumes(task.spec.container) == ["pgdata"]
    assert container_config(task, "n1")["HostConfig"]["Mounts"] == [
        {"Type": "volume", "Source": "pgdata", "Target": "/data"},
        {"Type": "volume", "Source": "shop_cache", "Target": "/cache"},
    ]
