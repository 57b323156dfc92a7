"""End to end on a real engine: a service reads its secret and config as files with the content,
owner and mode asked; the value shows in no `podium` output and only in memory on the node."""

from __future__ import annotations

import pathlib
import signal
import subprocess

import pytest

from podium.agent.secretfiles import is_tmpfs
from tests.helpers import Cluster, docker, eventually

pytestmark = pytest.mark.engine

VALUE = "s3cr3t-e2e-7f3a"

STACK = """\
name: sec
services:
  app:
    image: podium/web:latest
    init: true
    deploy:
      placement: {constraints: [node.hostname == node-a]}
    secrets:
      - db_password
      - source: db_password
        target: copy
        uid: "1000"
        mode: 0400
    configs: [app_conf]
secrets:
  db_password:
    file: pw.txt
configs:
  app_conf:
    content: "port=8080"
"""


def _exec(container: str, *argv: str) -> str:
    return docker("exec", container, "/bin/busybox", *argv).strip()


def _files_holding(root: pathlib.Path, needle: bytes, skip: list[pathlib.Path]) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if any(path.is_relative_to(s) for s in skip) or not path.is_file():
            continue
        try:
            if needle in path.read_bytes():
                found.append(str(path))
        except OSError:
            continue
    return found


def test_a_service_reads_its_secret_from_memory(cluster: Cluster,
                                                tmp_path: pathlib.Path) -> None:
    folder = tmp_path / "stack"
    folder.mkdir()
    (folder / "pw.txt").write_text(VALUE)
    (folder / "stack.yml").write_text(STACK)
    events = subprocess.Popen(cluster.argv("events", "-o", "json"),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deployed = cluster.ok("deploy", "-f", str(folder / "stack.yml"))
        assert "converged" in deployed
        (container,) = eventually(lambda: list(cluster.running_containers()),
                                  what="app running")
        assert _exec(container, "cat", "/run/secrets/db_password") == VALUE
        assert _exec(container, "stat", "-c", "%a %u %g", "/run/secrets/db_password") == "444 0 0"
        assert _exec(container, "stat", "-c", "%a %u", "/run/secrets/copy") == "400 1000"
        assert _exec(container, "cat", "/app_conf") == "port=8080"
        # Read-only in the container.
        write = subprocess.run(["docker", "exec", container, "/bin/busybox", "sh", "-c",
                                "echo x > /run/secrets/db_password"], capture_output=True)
        assert write.returncode != 0
        # The bind source is in the agent's tmpfs; nothing in the agents' data dirs on disk
        # holds the value.
        agent_dir = cluster.root / "node-a"
        assert is_tmpfs(agent_dir / "secrets")
        sources = docker("inspect", "--format",
                         "{{range .Mounts}}{{.Source}} {{end}}", container).split()
        assert sources and all(pathlib.Path(s).is_relative_to(agent_dir / "secrets")
                               for s in sources)
        for node in ("node-a", "node-b"):
            data_dir = cluster.root / node
            assert _files_holding(data_dir, VALUE.encode(), skip=[data_dir / "secrets"]) == []
        for shown in (cluster.ok("inspect", "sec_app"), cluster.ok("ps", "-o", "json"),
                      cluster.ok("services", "-o", "json"), cluster.ok("secret", "ls")):
            assert VALUE not in shown
        assert "db_password" in cluster.ok("inspect", "sec_app")
        cluster.ok("rm", "sec_app")
        eventually(lambda: not cluster.containers(), what="no container after rm")
        eventually(lambda: not any((agent_dir / "secrets").iterdir()),
                   what="the task's files removed with its container")
    finally:
        events.send_signal(signal.SIGINT)
        out, _ = events.communicate(timeout=30)
    assert b"sec_app" in out  # the events were seen...
    assert VALUE.encode() not in out  # ...without the value
    # Only what the agent logged: never the value either.
    for log in cluster.root.glob("*.log"):
        assert VALUE.encode() not in log.read_bytes(), log
