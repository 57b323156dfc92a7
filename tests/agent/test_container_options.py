"""Compose's container options (ContainerSpec fields user ... pids_limit) in the create body."""

from __future__ import annotations

from typing import Any

import pytest

from podium.agent._container import container_config
from podium.v1 import objects

UDP = objects.PortConfig.PROTOCOL_UDP

# The body the agent created before these options existed, for a spec using every older field
# (captured from the previous container_config): an empty options spec must still give it.
BODY_WITHOUT_OPTIONS: dict[str, Any] = {
    "Cmd": ["sh"],
    "Entrypoint": ["/bin/x"],
    "Env": ["A=1"],
    "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
    "Healthcheck": {"Retries": 2, "Test": ["CMD", "true"]},
    "HostConfig": {
        "Init": True,
        "LogConfig": {"Config": {"max-file": "3", "max-size": "10m"}, "Type": "json-file"},
        "Memory": 67108864,
        "NanoCpus": 1000000000,
        "PortBindings": {
            "53/udp": [{"HostIp": "", "HostPort": "53"}],
            "80/tcp": [{"HostIp": "", "HostPort": ""}],
        },
        "RestartPolicy": {"Name": "no"},
    },
    "Image": "img:1",
    "Labels": {
        "io.podium.node.id": "n1",
        "io.podium.service.id": "s1",
        "io.podium.service.name": "web",
        "io.podium.task.id": "t1",
        "io.podium.task.slot": "2",
    },
}


def full_task(**options: Any) -> objects.Task:
    container = objects.ContainerSpec(
        image="img:1", command=["sh"], entrypoint=["/bin/x"], env={"A": "1"}, init=True
    )
    container.stop_grace_period.FromSeconds(5)
    container.healthcheck.test.extend(["CMD", "true"])
    container.healthcheck.retries = 2
    for key, value in options.items():
        field = getattr(container, key)
        if isinstance(value, dict):
            field.update(value)
        elif isinstance(value, list):
            field.extend(value)
        else:
            setattr(container, key, value)
    spec = objects.ServiceSpec(name="web", container=container)
    spec.ports.add(target_port=80)
    spec.ports.add(
        target_port=53, protocol=UDP, published_port=53, mode=objects.PortConfig.PUBLISH_MODE_HOST
    )
    spec.resources.limits.nano_cpus = 10**9
    spec.resources.limits.memory_bytes = 1 << 26
    return objects.Task(id="t1", service_id="s1", service_name="web", slot=2, spec=spec)


def body(**options: Any) -> dict[str, Any]:
    return container_config(full_task(**options), "n1")


def added(**options: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The keys the options add to (or change in) Config and HostConfig, against no options."""
    with_options = body(**options)
    host = with_options.pop("HostConfig")
    base_host = BODY_WITHOUT_OPTIONS["HostConfig"]
    config_delta = {k: v for k, v in with_options.items() if BODY_WITHOUT_OPTIONS.get(k) != v}
    host_delta = {k: v for k, v in host.items() if base_host.get(k) != v}
    return config_delta, host_delta


def test_a_spec_without_options_gives_the_same_body_as_before() -> None:
    assert body() == BODY_WITHOUT_OPTIONS
    # Dict order of ExposedPorts is not semantic for the engine, but keep it stable anyway.
    assert list(body()["ExposedPorts"]) == ["80/tcp", "53/udp"]


@pytest.mark.parametrize(
    ("options", "config_keys"),
    [
        ({"user": "1000:1000"}, {"User": "1000:1000"}),
        ({"working_dir": "/srv"}, {"WorkingDir": "/srv"}),
        ({"hostname": "db-1"}, {"Hostname": "db-1"}),
        ({"stop_signal": "SIGQUIT"}, {"StopSignal": "SIGQUIT"}),
        ({"tty": True}, {"Tty": True}),
        ({"stdin_open": True}, {"OpenStdin": True}),
    ],
)
def test_container_level_options(options: dict[str, Any], config_keys: dict[str, Any]) -> None:
    assert added(**options) == (config_keys, {})


@pytest.mark.parametrize(
    ("options", "host_keys"),
    [
        ({"cap_add": ["NET_ADMIN", "SYS_TIME"]}, {"CapAdd": ["NET_ADMIN", "SYS_TIME"]}),
        ({"cap_drop": ["ALL"]}, {"CapDrop": ["ALL"]}),
        (
            {"sysctls": {"net.core.somaxconn": "1024", "net.ipv4.tcp_syncookies": "0"}},
            {"Sysctls": {"net.core.somaxconn": "1024", "net.ipv4.tcp_syncookies": "0"}},
        ),
        (
            {"extra_hosts": ["somehost:162.242.195.82", "v6:::1"]},
            {"ExtraHosts": ["somehost:162.242.195.82", "v6:::1"]},
        ),
        ({"dns": ["8.8.8.8", "9.9.9.9"]}, {"Dns": ["8.8.8.8", "9.9.9.9"]}),
        ({"dns_search": ["example.com"]}, {"DnsSearch": ["example.com"]}),
        ({"dns_opt": ["use-vc", "no-tld-query"]}, {"DnsOptions": ["use-vc", "no-tld-query"]}),
        ({"shm_size_bytes": 64 << 20}, {"ShmSize": 64 << 20}),
        ({"read_only": True}, {"ReadonlyRootfs": True}),
        ({"privileged": True}, {"Privileged": True}),
        (
            {"security_opt": ["label:user:USER", "no-new-privileges:true"]},
            {"SecurityOpt": ["label:user:USER", "no-new-privileges:true"]},
        ),
        ({"group_add": ["mail", "1001"]}, {"GroupAdd": ["mail", "1001"]}),
        ({"pids_limit": 100}, {"PidsLimit": 100}),
        ({"pids_limit": -1}, {"PidsLimit": -1}),  # the engine's "unlimited", not the default
    ],
)
def test_host_level_options(options: dict[str, Any], host_keys: dict[str, Any]) -> None:
    assert added(**options) == ({}, host_keys)


def test_ulimits_with_and_without_a_hard_limit() -> None:
    ulimits = [
        objects.Ulimit(name="nproc", soft=65535),  # Compose `nproc: 65535`: both limits
        objects.Ulimit(name="nofile", soft=20000, hard=40000),
        objects.Ulimit(name="core", soft=0, hard=0),
    ]
    assert added(ulimits=ulimits) == (
        {},
        {
            "Ulimits": [
                {"Name": "nproc", "Soft": 65535, "Hard": 65535},
                {"Name": "nofile", "Soft": 20000, "Hard": 40000},
                {"Name": "core", "Soft": 0, "Hard": 0},
            ]
        },
    )


@pytest.mark.parametrize(
    ("ulimit", "message"),
    [
        (objects.Ulimit(soft=1), "ulimits: an entry has no name"),
        (objects.Ulimit(name="nofile", soft=10, hard=5), "ulimits.nofile: soft limit 10 is above"),
    ],
)
def test_invalid_ulimits_are_refused_naming_the_field(ulimit: objects.Ulimit, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        body(ulimits=[ulimit])


def test_negative_shm_size_is_refused() -> None:
    with pytest.raises(ValueError, match="shm_size"):
        body(shm_size_bytes=-1)


def test_log_options_keep_the_rotation_for_json_file_unless_overridden() -> None:
    assert added(log_options={"max-size": "1m", "compress": "true"})[1] == {
        "LogConfig": {
            "Type": "json-file",
            "Config": {"max-size": "1m", "max-file": "3", "compress": "true"},
        }
    }
    assert added(log_driver="json-file")[1] == {}  # naming the default changes nothing


def test_another_log_driver_gets_exactly_the_users_options() -> None:
    assert added(log_driver="syslog", log_options={"tag": "web"})[1] == {
        "LogConfig": {"Type": "syslog", "Config": {"tag": "web"}}
    }
    assert added(log_driver="none")[1] == {"LogConfig": {"Type": "none", "Config": {}}}


def test_expose_merges_with_the_published_ports() -> None:
    config = body(expose=["80", "3000", "9000/udp", "8000-8002/TCP", "53/udp"])
    assert config["ExposedPorts"] == {
        "80/tcp": {},
        "53/udp": {},
        "3000/tcp": {},
        "9000/udp": {},
        "8000/tcp": {},
        "8001/tcp": {},
        "8002/tcp": {},
    }
    # Exposed only: no binding on the node.
    published = BODY_WITHOUT_OPTIONS["HostConfig"]["PortBindings"]
    assert config["HostConfig"]["PortBindings"] == published


def test_expose_alone_sets_exposed_ports_without_bindings() -> None:
    t = objects.Task(
        id="t1",
        service_id="s1",
        service_name="db",
        slot=1,
        spec=objects.ServiceSpec(
            name="db", container=objects.ContainerSpec(image="pg", expose=["5432"])
        ),
    )
    config = container_config(t, "n1")
    assert config["ExposedPorts"] == {"5432/tcp": {}}
    assert "PortBindings" not in config["HostConfig"]


@pytest.mark.parametrize("entry", ["", "http", "80/icmp", "0", "70000", "90-80", "1-2000", "-1"])
def test_invalid_expose_entries_are_refused_naming_the_field(entry: str) -> None:
    with pytest.raises(ValueError, match="expose: "):
        body(expose=[entry])


def test_every_option_at_once_leaves_the_older_keys_alone() -> None:
    config = body(
        user="app", working_dir="/app", hostname="h", stop_signal="SIGINT", tty=True,
        stdin_open=True, cap_add=["NET_ADMIN"], cap_drop=["MKNOD"], sysctls={"a.b": "1"},
        ulimits=[objects.Ulimit(name="nofile", soft=1, hard=2)], extra_hosts=["x:1.2.3.4"],
        dns=["1.1.1.1"], dns_search=["d"], dns_opt=["ndots:1"], shm_size_bytes=1 << 20,
        read_only=True, log_driver="local", log_options={"max-size": "5m"}, expose=["81"],
        privileged=True, security_opt=["seccomp=unconfined"], group_add=["audio"], pids_limit=7,
    )
    for key in ("Cmd", "Entrypoint", "Env", "Healthcheck", "Image", "Labels"):
        assert config[key] == BODY_WITHOUT_OPTIONS[key]
    for key in ("Init", "Memory", "NanoCpus", "PortBindings", "RestartPolicy"):
        assert config["HostConfig"][key] == BODY_WITHOUT_OPTIONS["HostConfig"][key]
    assert config["HostConfig"]["LogConfig"] == {"Type": "local", "Config": {"max-size": "5m"}}
    assert set(config["ExposedPorts"]) == {"80/tcp", "53/udp", "81/tcp"}
