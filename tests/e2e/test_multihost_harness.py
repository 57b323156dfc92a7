"""The multi-host harness itself: three simulated hosts (netns + dockerd + agent each) and a
manager, a service spread over them, then a crash and a partition. Needs root."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from podium.lab.hosts import MANAGER_PORT, HostCluster
from tests.helpers import IMAGE, WEB, eventually

pytestmark = [pytest.mark.engine, pytest.mark.multihost]


@pytest.fixture
def hosts(tmp_path: pathlib.Path) -> Iterator[HostCluster]:
    assert os.geteuid() == 0, "the multi-host harness needs root (network namespaces, dockerd)"
    for tool in ("ip", "dockerd", "docker"):
        assert shutil.which(tool), f"{tool} not found"
    cluster = HostCluster(tmp_path / "hosts", hosts=3)
    with cluster:
        yield cluster
    assert not cluster.leftovers(), "the harness left things behind"


def published_port(task: dict[str, object]) -> int:
    ports = task["ports"]
    assert isinstance(ports, list) and ports, task
    # "0.0.0.0:32768->80/tcp"
    return int(str(ports[0]).split("->")[0].rsplit(":", 1)[1])


def test_three_hosts_crash_and_partition(hosts: HostCluster, tmp_path: pathlib.Path) -> None:
    # Three distinct engines, each with the image.
    engine_ids = {h: hosts.docker(h, "info", "--format", "{{.ID}}").strip() for h in hosts.names}
    assert len(set(engine_ids.values())) == 3, engine_ids
    for h in hosts.names:
        hosts.docker(h, "image", "inspect", IMAGE)
    nodes = {n["name"]: n for n in hosts.json("nodes")}
    assert {name: n["state"] for name, n in nodes.items()} == dict.fromkeys(hosts.names, "ready")
    # Each agent runs in its host's namespace: the manager sees it come from the host's address.
    for name, node in nodes.items():
        assert f":{hosts.host(name).address}:" in f":{node['addr']}", node
        assert node["labels"] == {"host": name}

    stack = tmp_path / "web.yaml"
    stack.write_text(WEB)
    assert "converged" in hosts.ok("deploy", "-f", str(stack))
    tasks = [t for t in hosts.json("ps", "web") if t["state"] == "running"]
    assert sorted(t["node"] for t in tasks) == ["h1", "h2", "h3"]
    for h in hosts.names:
        assert len(hosts.containers(h, all=False)) == 1, h

    # h1 reaches the replica on h2 through h2's address and the port h2's engine published.
    h2 = hosts.host("h2")
    port = published_port(next(t for t in tasks if t["node"] == "h2"))
    url = f"http://{h2.address}:{port}/"
    assert hosts.http_get("h1", url).startswith("hello from ")

    # Power-off: nothing of h3 survives (engine, shims, containers) and the manager notices.
    assert hosts.pids("h3")
    hosts.crash("h3")
    assert not hosts.pids("h3")
    with pytest.raises(subprocess.CalledProcessError):
        hosts.docker("h3", "info")
    eventually(lambda: hosts.node_state("h3") == "down", timeout=20, what="h3 down")

    # Partition: h1 loses h2 but keeps the manager; healing brings h2 back.
    manager = hosts.manager_address.split(":")[0]
    hosts.partition("h2")
    assert not hosts.reachable("h1", h2.address, port)
    assert hosts.reachable("h1", manager, MANAGER_PORT)
    hosts.heal("h2")
    # The cut also kept h2 from the manager: past ~1.7 s (a slow machine) h2 was down and its
    # replica replaced on h1 (nothing moves back: no rebalancing), and the returning agent
    # removed the original. Either way h2 comes back ready and every replica of web serves h1.
    eventually(lambda: hosts.node_state("h2") == "ready", timeout=20, what="h2 ready again")

    def all_replicas_serve() -> bool:
        running = [t for t in hosts.json("ps", "web") if t["state"] == "running"]
        if len(running) != 3:
            return False
        for task in running:
            address = hosts.host(task["node"]).address
            url = f"http://{address}:{published_port(task)}/"
            if not hosts.http_get("h1", url).startswith("hello from "):
                return False
        return True

    eventually(all_replicas_serve, timeout=30, what="3 replicas of web serving h1 again")
