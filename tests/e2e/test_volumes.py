"""Volumes on a real engine: a named volume outlives its container; a missing bind path fails
the task saying so."""

from __future__ import annotations

import json
import pathlib
import subprocess
from typing import Any

import pytest

from tests.helpers import IMAGE, Cluster, docker, eventually

pytestmark = pytest.mark.engine

TEST_LABEL = "io.podium.test.volumes"


def deploy(cluster: Cluster, tmp_path: pathlib.Path, text: str) -> None:
    path = tmp_path / "stack.yaml"
    path.write_text(text)
    cluster.ok("deploy", "-f", str(path), "--detach")


def running(cluster: Cluster, service: str) -> list[dict[str, Any]]:
    return [t for t in cluster.json("ps", service)
            if t["state"] == "running" and t["container_id"]]


def test_a_named_volume_keeps_its_data_across_restarts_and_new_tasks(
        cluster: Cluster, tmp_path: pathlib.Path) -> None:
    # Each start appends a line: the second start sees the first one's line.
    deploy(cluster, tmp_path, f"""
services:
  store:
    image: {IMAGE}
    init: true
    command: ["sh", "-c", "echo started >> /data/log; exec sleep 3600"]
    volumes: [data:/data]
volumes:
  data:
    labels: {{{TEST_LABEL}: "1"}}
""")
    try:
        [first] = eventually(lambda: running(cluster, "store"), timeout=60, what="store runs")
        container = str(first["container_id"])
        log = eventually(lambda: docker("exec", container, "cat", "/data/log").strip(),
                         what="first start logged")
        assert log == "started"
        mounts = json.loads(docker("inspect", "--format", "{{json .Mounts}}", container))
        assert [(m["Type"], m["Destination"]) for m in mounts] == [("volume", "/data")]
        assert mounts[0]["Name"].endswith("_data")

        docker("kill", container)

        def restarted() -> str:
            tasks = running(cluster, "store")
            if not tasks:
                return ""
            current = str(tasks[0]["container_id"])
            try:
                return docker("exec", current, "cat", "/data/log")
            except subprocess.CalledProcessError:  # the container may be between states
                return ""

        log = eventually(lambda: restarted().count("started") == 2 and restarted(),
                         timeout=60, what="second start sees the first one's data")
        assert log.split() == ["started", "started"]

        # A new task (a new container) of the slot: same node, same data.
        cluster.ok("deploy", "-f", str(tmp_path / "stack.yaml"), "--force", "--detach")
        eventually(lambda: restarted().count("started") == 3, timeout=60,
                   what="a new task sees the data of the old ones")
        [second] = running(cluster, "store")
        assert second["id"] != first["id"] and second["container_id"] != container
        assert second["node"] == first["node"]
        cluster.ok("rm", "store")
        eventually(lambda: not cluster.containers(), what="no container after rm")
    finally:
        for name in docker("volume", "ls", "-q", "--filter", f"label={TEST_LABEL}").split():
            docker("volume", "rm", "-f", name)


def test_a_missing_bind_source_fails_the_task_saying_so(
        cluster: Cluster, tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "not-there"
    deploy(cluster, tmp_path, f"""
services:
  broken:
    image: {IMAGE}
    init: true
    command: ["sleep", "3600"]
    volumes:
      - {{type: bind, source: {missing}, target: /x}}
""")

    def failed() -> list[dict[str, Any]]:
        return [t for t in cluster.json("ps", "broken", "-a")
                if f"bind mount source {missing} does not exist on node" in str(t["error"])]

    [task, *_] = eventually(failed, timeout=60, what="a task failed with the bind error")
    assert task["state"] == "failed"
    assert str(task["error"]).endswith(f"on node {task['node']}")
    cluster.ok("rm", "broken")
    eventually(lambda: not cluster.containers(), what="no container after rm")


def test_an_external_volume_missing_on_the_node_fails_the_task_saying_so(
        cluster: Cluster, tmp_path: pathlib.Path) -> None:
    deploy(cluster, tmp_path, f"""
services:
  user:
    image: {IMAGE}
    init: true
    command: ["sleep", "3600"]
    volumes: [shared:/shared]
volumes:
  shared: {{external: true, name: podium-test-no-such-volume}}
""")
    expected = "volume podium-test-no-such-volume is declared external but does not exist on node"

    def failed() -> list[dict[str, Any]]:
        return [t for t in cluster.json("ps", "user", "-a") if expected in str(t["error"])]

    eventually(failed, timeout=60, what="a task failed with the external volume error")
    cluster.ok("rm", "user")
    eventually(lambda: not cluster.containers(), what="no container after rm")
    # The engine did not create it, empty.
    assert docker("volume", "ls", "-q", "--filter", "name=podium-test-no-such-volume") == ""
