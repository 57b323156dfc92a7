"""Rolling updates and rollbacks on simulated hosts with real engines, under traffic: a client
going through the mesh sees no failed request, and a manager killed mid-update finishes it."""

from __future__ import annotations

import json
import pathlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from podium.lab.hosts import HostCluster, requests_result
from tests.helpers import IMAGE, eventually

pytestmark = [pytest.mark.engine, pytest.mark.multihost, pytest.mark.timeout(240)]

PORT = 8080


def stack(version: str, *, replicas: int = 4, healthy: bool = True) -> str:
    """Version `version` of `web`; an unhealthy version serves no /health.html."""
    health = "echo ok > /www/health.html && " if healthy else ""
    cmd = f"mkdir -p /www && {health}hostname > /www/index.html && exec httpd -f -p 80 -h /www"
    return f"""
services:
  web:
    image: {IMAGE}
    command: ["sh", "-c", "{cmd}"]
    environment: {{VERSION: "{version}"}}
    init: true
    stop_grace_period: 2s
    ports: ["{PORT}:80"]
    x-podium-probe:
      http: {{port: 80, path: /health.html}}
      interval: 0.3s
      timeout: 0.5s
      retries: 2
    deploy:
      replicas: {replicas}
      update_config: {{parallelism: 2, monitor: 1s}}
      rollback_config: {{parallelism: 2, monitor: 1s}}
"""


@pytest.fixture
def hosts(tmp_path: pathlib.Path) -> Iterator[HostCluster]:
    with HostCluster(tmp_path / "hosts", hosts=2) as cluster:
        yield cluster


def inspect(hosts: HostCluster, ref: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(hosts.ok("inspect", ref))
    return found


def update_status(hosts: HostCluster) -> dict[str, Any]:
    status: dict[str, Any] = inspect(hosts, "web").get("update_status", {})
    return status


def wait_state(hosts: HostCluster, *states: str, timeout: float = 90) -> dict[str, Any]:
    eventually(lambda: update_status(hosts).get("state") in states, timeout=timeout,
               interval=0.3, what=f"web {' or '.join(states)}")
    return update_status(hosts)


def live(hosts: HostCluster) -> list[dict[str, Any]]:
    return [t for t in hosts.json("ps", "web") if t["desired"] == "running"]


def versions_running(hosts: HostCluster) -> Counter[str]:
    return Counter(str(inspect(hosts, str(t["id"]))["spec_version"]) for t in live(hosts))


def test_updates_and_an_automatic_rollback_cost_a_client_nothing(hosts: HostCluster) -> None:
    hosts.deploy(stack("1"))
    eventually(lambda: sum(t["health"] == "healthy" for t in live(hosts)) == 4, timeout=60,
               what="4 healthy replicas")
    client = hosts.start_mesh_requests("h1", PORT, seconds=45)
    hosts.deploy(stack("2"), "--detach")
    status = wait_state(hosts, "STATE_COMPLETED", "STATE_ROLLED_BACK", "STATE_PAUSED")
    assert status["state"] == "STATE_COMPLETED", status
    hosts.deploy(stack("3", healthy=False), "--detach")
    status = wait_state(hosts, "STATE_ROLLED_BACK", "STATE_ROLLBACK_PAUSED", "STATE_COMPLETED")
    assert status["state"] == "STATE_ROLLED_BACK", status
    assert "unhealthy" in status["message"] and "rolled back to version 2" in status["message"]
    result = requests_result(client)
    assert result["failures"] == [], result["failures"][:5]
    assert result["count"] > 100
    eventually(lambda: versions_running(hosts) == {"2": 4}, timeout=30,
               what="4 tasks of version 2")
    hosts.ok("rm", "web")


def test_a_manager_killed_mid_update_finishes_it_without_duplicates(hosts: HostCluster) -> None:
    hosts.deploy(stack("1", replicas=6))
    eventually(lambda: sum(t["health"] == "healthy" for t in live(hosts)) == 6, timeout=60,
               what="6 healthy replicas")
    hosts.deploy(stack("2", replicas=6), "--detach")
    eventually(lambda: int(update_status(hosts).get("done", 0)) >= 2, timeout=60,
               interval=0.1, what="two slots updated")
    hosts.restart_manager()
    status = wait_state(hosts, "STATE_COMPLETED", "STATE_ROLLED_BACK", "STATE_PAUSED")
    assert status["state"] == "STATE_COMPLETED", status
    tasks = live(hosts)
    assert versions_running(hosts) == {"2": 6}
    assert len(tasks) == 6 and sorted(t["name"] for t in tasks) == [f"web.{n}" for n in
                                                                   range(1, 7)]

    def running_containers() -> int:
        return sum(len(hosts.containers(h, all=False)) for h in hosts.names)

    eventually(lambda: running_containers() == 6, timeout=30, what="6 containers running")
    hosts.ok("rm", "web")
