"""A backup taken while the manager runs, restored into a new data dir for a new manager at the
same address: the agent reconnects as the same node (its certificate still accepted: the CA came
back with the archive) to the same service and tasks, and no container is restarted."""

from __future__ import annotations

import json
import pathlib
import signal
import stat
import subprocess
from collections.abc import Iterator

import pytest

from tests.helpers import IMAGE, PODIUM, Cluster, docker, eventually

pytestmark = pytest.mark.engine

STACK = f"""
services:
  web:
    image: {IMAGE}
    init: true
    stop_grace_period: 2s
    deploy:
      replicas: 2
"""


@pytest.fixture
def one_agent(engine: None, tmp_path: pathlib.Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        c.start_manager()
        c.start_agent("node-a")
        yield c
    finally:
        c.close()


def _tasks(cluster: Cluster) -> dict[str, str]:
    """Task id -> container id, of the running tasks of `web`."""
    return {t["id"]: t["container_id"] for t in cluster.json("ps", "web")
            if t["state"] == "running" and t["desired"] == "running"}


def _two_tasks(cluster: Cluster) -> dict[str, str]:
    tasks = _tasks(cluster)
    return tasks if len(tasks) == 2 else {}


def _started(container_ids: list[str]) -> dict[str, str]:
    out = json.loads(docker("inspect", *container_ids))
    return {c["Id"]: c["State"]["StartedAt"] for c in out if c["State"]["Running"]}


def _manager(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PODIUM, "manager", *args], capture_output=True, text=True,
                          timeout=60)


def test_a_restored_manager_gets_back_its_agent_tasks_and_containers(
        one_agent: Cluster, tmp_path: pathlib.Path) -> None:
    cluster = one_agent
    (tmp_path / "stack.yaml").write_text(STACK)
    cluster.ok("deploy", "-f", str(tmp_path / "stack.yaml"))
    tasks: dict[str, str] = eventually(lambda: _two_tasks(cluster), what="2 tasks running")
    started = _started(list(tasks.values()))
    assert len(started) == 2
    node_id = cluster.node_ids["node-a"]
    services = cluster.json("services")

    archive = tmp_path / "manager.backup"
    made = _manager("backup", "--data-dir", str(cluster.manager_data), str(archive))
    assert made.returncode == 0, made.stderr
    assert "secret" in made.stdout
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert cluster.node_state("node-a") == "ready"  # the manager ran on through the backup

    cluster.kill("manager", signal.SIGTERM)
    new_data = tmp_path / "restored" / "manager"
    restored = _manager("restore", "--data-dir", str(new_data), str(archive))
    assert restored.returncode == 0, restored.stderr
    cluster.manager_data = new_data
    cluster.start_manager()

    eventually(lambda: cluster.node_state("node-a") == "ready", timeout=30,
               what="node-a back")
    nodes = cluster.json("nodes")
    assert [(n["name"], n["id"]) for n in nodes] == [("node-a", node_id)]
    assert cluster.json("services") == services
    eventually(lambda: _tasks(cluster) == tasks, timeout=30, what="the same tasks running")
    assert _started(list(tasks.values())) == started
    # The agent came back with its certificate: it joined once, before the backup.
    assert (cluster.root / "node-a.log").read_text().count("joined the cluster") == 1
    cluster.ok("rm", "web")
    eventually(lambda: not cluster.containers(), timeout=30, what="containers removed")
