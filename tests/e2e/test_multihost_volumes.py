"""A replica with a named local volume stays with its data across hosts: while its host is
down it waits, saying where its data is, and it comes back to that data; a volume marked
x-podium-may-move lets its replica start elsewhere."""

from __future__ import annotations

import pathlib
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from podium.lab.hosts import HostCluster
from tests.helpers import IMAGE, consistently, eventually

pytestmark = [pytest.mark.engine, pytest.mark.multihost]

STACK = f"""
services:
  db:
    image: {IMAGE}
    init: true
    stop_grace_period: 1s
    command: ["sh", "-c", "echo started >> /data/log; exec sleep 3600"]
    volumes: [data:/data]
  cache:
    image: {IMAGE}
    init: true
    stop_grace_period: 1s
    command: ["sleep", "3600"]
    volumes: [scratch:/scratch]
volumes:
  data:
  scratch:
    x-podium-may-move: true
"""


@pytest.fixture
def hosts(tmp_path: pathlib.Path) -> Iterator[HostCluster]:
    with HostCluster(tmp_path / "hosts", hosts=2) as cluster:
        cluster.deploy(STACK)
        yield cluster
        cluster.ok("rm", "db", "cache")


def live(hosts: HostCluster, service: str) -> list[dict[str, Any]]:
    return [t for t in hosts.json("ps", service) if t["desired"] == "running"]


def running_on(hosts: HostCluster, service: str) -> str:
    nodes = [t["node"] for t in live(hosts, service) if t["state"] == "running"]
    return nodes[0] if len(nodes) == 1 else ""


def test_a_replica_waits_for_the_host_with_its_volume(hosts: HostCluster) -> None:
    home = eventually(lambda: running_on(hosts, "db"), timeout=30, what="db running")
    other = next(name for name in hosts.names if name != home)
    hosts.power_off(home)
    eventually(lambda: hosts.node_state(home) == "down", timeout=30, what=f"{home} down")

    def waiting() -> str:
        tasks = [t for t in live(hosts, "db") if t["state"] == "pending"]
        return str(tasks[0]["message"]) if tasks else ""

    reason = eventually(lambda: "which holds its volume data" in waiting() and waiting(),
                        timeout=30, what="db's replacement waits with the reason")
    assert reason.startswith(f"waits for node {home}, which holds its volume data (")
    assert "x-podium-may-move: true lets it start elsewhere" in reason
    # The movable one runs on the other host; the pinned one never starts there, empty.
    eventually(lambda: running_on(hosts, "cache") == other, timeout=30, what="cache moved")
    consistently(lambda: running_on(hosts, "db") == "", duration=3, what="db not started")

    hosts.restart_host(home)
    eventually(lambda: running_on(hosts, "db") == home, timeout=60, what=f"db back on {home}")
    [task] = [t for t in live(hosts, "db") if t["state"] == "running"]

    def log() -> str:
        try:
            return hosts.docker(home, "exec", str(task["container_id"]), "cat", "/data/log")
        except subprocess.CalledProcessError:
            return ""

    eventually(lambda: log().split() == ["started", "started"], timeout=30,
               what="the new task sees the first one's data")
