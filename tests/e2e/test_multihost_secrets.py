"""Secrets on simulated hosts: the agent's tmpfs must be visible to its host's own engine (each
runs in a mount namespace of its own), and a crash (a power cut) wipes it. Needs root."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator

import pytest

from podium.lab import _system as system
from podium.lab.hosts import HostCluster

pytestmark = [pytest.mark.engine, pytest.mark.multihost]

STACK = """\
services:
  app:
    image: podium/web:latest
    init: true
    deploy:
      placement: {constraints: [node.hostname == h2]}
    secrets: [pw]
secrets:
  pw:
    environment: MULTIHOST_PW
"""


@pytest.fixture
def hosts(tmp_path: pathlib.Path) -> Iterator[HostCluster]:
    assert os.geteuid() == 0, "the multi-host harness needs root (network namespaces, dockerd)"
    cluster = HostCluster(tmp_path / "hosts", hosts=2)
    with cluster:
        yield cluster
    assert not cluster.leftovers(), "the harness left things behind"


def test_a_hosts_engine_mounts_its_agents_secret_files(
        hosts: HostCluster, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MULTIHOST_PW", "multi-s3cr3t")
    stack = tmp_path / "stack.yaml"
    stack.write_text(STACK)
    assert "converged" in hosts.ok("deploy", "-f", str(stack))
    (container,) = hosts.containers("h2", all=False)
    read = hosts.docker("h2", "exec", container, "/bin/busybox", "cat", "/run/secrets/pw")
    assert read.strip() == "multi-s3cr3t"
    assert not hosts.containers("h1")
    secrets_dir = hosts.host("h2").data / "agent" / "secrets"
    assert str(secrets_dir) in system.mounts_under(secrets_dir.parent)
    hosts.ok("rm", "app")
