"""Pure task -> container translation, and the engine's documents read back. No engine, no loop."""

from __future__ import annotations

from typing import Any

import pytest

from podium.agent._container import (
    container_config,
    container_event,
    container_labels,
    container_name,
    container_state,
    parse_time,
)
from podium.agent.executor import (
    LABEL_NODE,
    LABEL_SERVICE,
    LABEL_SERVICE_NAME,
    LABEL_SLOT,
    LABEL_TASK,
)
from podium.v1 import objects

TCP = objects.PortConfig.PROTOCOL_TCP
UDP = objects.PortConfig.PROTOCOL_UDP
ZERO_TIME = "0001-01-01T00:00:00Z"


def task(slot: int = 2, **container: Any) -> objects.Task:
    spec = objects.ServiceSpec(name="web", container=objects.ContainerSpec(image="img:1"))
    for key, value in container.items():
        field = getattr(spec.container, key)
        if isinstance(value, dict):
            field.update(value)
        elif isinstance(value, list):
            field.extend(value)
        else:
            setattr(spec.container, key, value)
    return objects.Task(id="t1", service_id="s1", service_name="web", slot=slot, spec=spec)


def test_name_is_service_slot_task_for_replicated_and_service_node_task_for_global() -> None:
    assert container_name(task(slot=3), "node-a") == "web.3.t1"
    assert container_name(task(slot=0), "node-a") == "web.node-a.t1"


def test_name_is_sanitised_to_dockers_charset() -> None:
    t = task(slot=0)
    t.service_name = "_my svc/ü"
    assert container_name(t, "node:1") == "my-svc--.node-1.t1"


def test_labels_are_the_users_plus_podiums_which_win() -> None:
    t = task(labels={"team": "a", LABEL_TASK: "spoofed"})
    assert container_labels(t, "n1") == {
        "team": "a",
        LABEL_TASK: "t1",
        LABEL_SERVICE: "s1",
        LABEL_SERVICE_NAME: "web",
        LABEL_NODE: "n1",
        LABEL_SLOT: "2",
    }


def test_minimal_config_has_no_cmd_entrypoint_env_ports_limits_or_init() -> None:
    config = container_config(task(), "n1")
    assert config["Image"] == "img:1"
    assert config["Labels"][LABEL_NODE] == "n1"
    for absent in ("Cmd", "Entrypoint", "Env", "ExposedPorts"):
        assert absent not in config
    host = config["HostConfig"]
    assert host == {
        "RestartPolicy": {"Name": "no"},
        "LogConfig": {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}},
    }


def test_command_entrypoint_env_and_init() -> None:
    config = container_config(
        task(
            command=["-c", "echo hi"], entrypoint=["/bin/sh"], env={"B": "2", "A": "x=y"}, init=True
        ),
        "n1",
    )
    assert config["Cmd"] == ["-c", "echo hi"]
    assert config["Entrypoint"] == ["/bin/sh"]
    assert config["Env"] == ["A=x=y", "B=2"]
    assert config["HostConfig"]["Init"] is True


def test_limits_become_nano_cpus_and_memory_only_when_positive() -> None:
    t = task()
    t.spec.resources.limits.nano_cpus = 500_000_000
    t.spec.resources.reservations.memory_bytes = 1 << 30  # reservations are the scheduler's
    host = container_config(t, "n1")["HostConfig"]
    assert host["NanoCpus"] == 500_000_000
    assert "Memory" not in host
    t.spec.resources.limits.memory_bytes = 64 << 20
    assert container_config(t, "n1")["HostConfig"]["Memory"] == 64 << 20


def test_host_mode_ports_are_fixed_and_ingress_ones_engine_chosen_for_the_mesh() -> None:
    t = task()
    t.spec.ports.extend(
        [
            objects.PortConfig(target_port=80),
            objects.PortConfig(
                target_port=80, published_port=8080, mode=objects.PortConfig.PUBLISH_MODE_HOST
            ),
            objects.PortConfig(
                target_port=53, protocol=UDP, published_port=53, host_ip="127.0.0.1"
            ),
        ]
    )
    config = container_config(t, "n1")
    assert config["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert config["HostConfig"]["PortBindings"] == {
        "80/tcp": [{"HostIp": "", "HostPort": ""}, {"HostIp": "", "HostPort": "8080"}],
        "53/udp": [{"HostIp": "127.0.0.1", "HostPort": ""}],
    }


def test_config_does_not_share_mutable_state_between_calls() -> None:
    first = container_config(task(), "n1")
    first["HostConfig"]["LogConfig"]["Config"]["max-size"] = "1k"
    assert container_config(task(), "n1")["HostConfig"]["LogConfig"]["Config"]["max-size"] == "10m"


def inspected(state: dict[str, Any], ports: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "Id": "c1",
        "Name": "/web.2.t1",
        "Config": {"Labels": {LABEL_TASK: "t1"}},
        "State": {"Running": False, "ExitCode": 0, "Error": "", "OOMKilled": False}
        | {"StartedAt": ZERO_TIME, "FinishedAt": ZERO_TIME}
        | state,
        "NetworkSettings": {"Ports": ports or {}},
    }


def test_state_of_running_container_with_engine_chosen_ports() -> None:
    ports = {
        "80/tcp": [
            {"HostIp": "0.0.0.0", "HostPort": "32768"},
            {"HostIp": "::", "HostPort": "32768"},
        ],
        "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "53"}],
        "443/tcp": None,  # exposed by the image, not published
    }
    s = container_state(
        inspected({"Running": True, "StartedAt": "2024-01-02T03:04:05.123456789Z"}, ports)
    )
    assert (s.container_id, s.task_id, s.name, s.running) == ("c1", "t1", "web.2.t1", True)
    assert s.exit_code is None and s.finished_at is None
    assert s.started_at == pytest.approx(1704164645.123456789)
    assert [(p.target_port, p.protocol, p.published_port, p.host_ip) for p in s.ports] == [
        (53, UDP, 53, "127.0.0.1"),
        (80, TCP, 32768, "0.0.0.0"),
        (80, TCP, 32768, "::"),
    ]


def test_state_of_exited_created_and_failed_to_start_containers() -> None:
    exited = container_state(
        inspected(
            {
                "ExitCode": 137,
                "OOMKilled": True,
                "StartedAt": "2024-01-02T03:04:05Z",
                "FinishedAt": "2024-01-02T03:04:06.5+01:00",
            }
        )
    )
    assert (exited.running, exited.exit_code, exited.oom_killed) == (False, 137, True)
    assert exited.finished_at == pytest.approx(1704164646.5 - 3600)

    created = container_state(inspected({}))
    assert (created.exit_code, created.started_at, created.finished_at) == (None, None, None)

    failed = container_state(inspected({"ExitCode": 127, "Error": "exec: nosuch: not found"}))
    assert (failed.exit_code, failed.error, failed.started_at) == (
        127,
        "exec: nosuch: not found",
        None,
    )


def event(action: str, **attributes: str) -> dict[str, Any]:
    return {
        "Type": "container",
        "Action": action,
        "Actor": {"ID": "c1", "Attributes": {LABEL_TASK: "t1", **attributes}},
        "time": 1700000000,
        "timeNano": 1700000000123456789,
    }


def test_events_map_task_id_exit_code_and_time() -> None:
    die = container_event(event("die", exitCode="1"))
    assert die is not None
    assert (die.task_id, die.container_id, die.action, die.exit_code, die.time_ns) == (
        "t1",
        "c1",
        "die",
        1,
        1700000000123456789,
    )
    start = container_event(event("start"))
    assert start is not None and start.exit_code is None


@pytest.mark.parametrize("action", ["exec_start: sh -c true", "kill"])
def test_other_container_actions_are_dropped(action: str) -> None:
    assert container_event(event(action)) is None


def test_health_status_events_are_kept_without_their_detail() -> None:
    health = container_event(event("health_status: unhealthy"))
    assert health is not None and health.action == "health_status"


def test_non_container_events_are_dropped() -> None:
    assert container_event(event("create") | {"Type": "network"}) is None


def test_parse_time_zero_and_junk_are_none() -> None:
    assert parse_time(ZERO_TIME) is None
    assert parse_time("") is None
    assert parse_time("yesterday") is None
    assert parse_time("1970-01-01T00:00:01.5Z") == 1.5


def test_healthcheck_translates_set_fields_only() -> None:
    t = task()
    check = t.spec.container.healthcheck
    check.test.extend(["CMD-SHELL", "wget -qO- http://127.0.0.1/ || exit 1"])
    check.interval.FromMilliseconds(500)
    check.retries = 2
    config = container_config(t, "node-a")
    assert config["Healthcheck"] == {
        "Test": ["CMD-SHELL", "wget -qO- http://127.0.0.1/ || exit 1"],
        "Interval": 500_000_000,
        "Retries": 2,
    }
    assert "Healthcheck" not in container_config(task(), "node-a")


def test_state_carries_health_pid_and_address() -> None:
    inspected = {
        "Id": "c1",
        "Name": "/web.1.t1",
        "Config": {"Labels": {LABEL_TASK: "t1"}},
        "State": {"Running": True, "Pid": 4242, "StartedAt": "2026-01-01T00:00:00Z",
                  "Health": {"Status": "unhealthy", "Log": [{"Output": "boom\n"}]}},
        "NetworkSettings": {"IPAddress": "", "Networks": {"bridge": {"IPAddress": "172.17.0.9"}}},
    }
    state = container_state(inspected)
    assert (state.health, state.health_output, state.pid, state.ip_address) == (
        "unhealthy", "boom", 4242, "172.17.0.9")
