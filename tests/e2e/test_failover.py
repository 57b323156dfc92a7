"""Failover on one machine: what needs no network partition to test."""

from __future__ import annotations

import pathlib
import subprocess

import pytest

from tests.helpers import IMAGE, Cluster, docker, eventually

pytestmark = pytest.mark.engine


def _running(container_id: str) -> bool:
    return docker("inspect", "-f", "{{.State.Running}}", container_id).strip() == "true"


def test_fenced_service_stops_when_the_manager_is_lost(cluster: Cluster,
                                                       tmp_path: pathlib.Path) -> None:
    (tmp_path / "stack.yaml").write_text(f"""
services:
  fenced:
    image: {IMAGE}
    init: true
    x-podium-fence: 2s
  plain:
    image: {IMAGE}
    init: true
""")
    cluster.ok("deploy", "-f", str(tmp_path / "stack.yaml"))
    fenced = cluster.json("ps", "fenced")[0]["container_id"]
    plain = cluster.json("ps", "plain")[0]["container_id"]
    cluster.kill("manager")
    eventually(lambda: not _running(fenced), timeout=10, what="fenced task stopped")
    assert _running(plain)
    cluster.start_manager()
    # The manager learns the fenced task stopped and starts a replacement.
    eventually(lambda: any(t["state"] == "running" and t["container_id"] != fenced
                           for t in cluster.json("ps", "fenced")), what="fenced task replaced")
    cluster.ok("rm", "fenced", "plain")


def test_pause_and_drain_keep_the_running_count(cluster: Cluster,
                                                tmp_path: pathlib.Path) -> None:
    (tmp_path / "stack.yaml").write_text(f"""
services:
  web:
    image: {IMAGE}
    init: true
    stop_grace_period: 1s
    deploy:
      replicas: 4
""")
    cluster.ok("deploy", "-f", str(tmp_path / "stack.yaml"))
    cluster.ok("node", "pause", "node-b")
    cluster.ok("scale", "web=6")
    on_b = [t for t in cluster.json("ps", "web") if t["node"] == "node-b"]
    assert len(on_b) == 2  # paused: kept its tasks, took no new ones
    cluster.ok("node", "activate", "node-b")

    watcher = subprocess.Popen(
        cluster.argv("node", "drain", "node-a", "--timeout", "60"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )

    def running() -> int:
        return sum(1 for t in cluster.json("ps", "web") if t["state"] == "running")

    counts: list[int] = []
    try:
        def drained() -> bool:
            counts.append(running())
            return watcher.poll() is not None

        eventually(drained, timeout=60, interval=0.1, what="drain finished")
    finally:
        out, _ = watcher.communicate(timeout=30)
    assert watcher.returncode == 0, out
    # Replacements start before the old tasks stop: never fewer than 6 running.
    assert min(counts) >= 6, counts
    tasks = [t for t in cluster.json("ps", "web") if t["desired"] == "running"]
    assert len(tasks) == 6 and {t["node"] for t in tasks} == {"node-b"}
    cluster.ok("node", "activate", "node-a")
    cluster.ok("rm", "web")
