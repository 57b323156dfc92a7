"""Node failure and failover on 3 simulated hosts, each with its own engine and agent."""

from __future__ import annotations

import pathlib
from collections import Counter
from collections.abc import Iterator

import pytest

from podium.lab.hosts import HostCluster
from tests.helpers import IMAGE, consistently, eventually

pytestmark = [pytest.mark.engine, pytest.mark.multihost]

STACK = f"""
services:
  web:
    image: {IMAGE}
    init: true
    stop_grace_period: 1s
    ports: ["80"]
    deploy:
      replicas: 6
"""


@pytest.fixture
def hosts(tmp_path: pathlib.Path) -> Iterator[HostCluster]:
    with HostCluster(tmp_path / "hosts", hosts=3) as cluster:
        cluster.deploy(STACK)
        yield cluster
        cluster.ok("rm", "web")


def running_by_node(hosts: HostCluster) -> Counter[str]:
    return Counter(t["node"] for t in hosts.json("ps", "web")
                   if t["state"] == "running" and t["desired"] == "running")


def engine_containers(hosts: HostCluster) -> dict[str, int]:
    return {name: len(hosts.containers(name, all=False)) for name in hosts.names}


def test_a_crashed_host_s_tasks_run_on_the_others(hosts: HostCluster) -> None:
    # Agent, engine and containers killed, the kernel alive: the host answers the manager's
    # probe, but none of the ports its engine published for the tasks does, so nothing of it
    # serves and its tasks move at once. (Tasks that publish no port cannot show that: they are
    # held for the agent's restart grace first.)
    assert running_by_node(hosts) == {"h1": 2, "h2": 2, "h3": 2}
    hosts.crash("h3")
    eventually(lambda: hosts.node_state("h3") == "down", timeout=10, what="h3 down")
    moved = eventually(lambda: (c := running_by_node(hosts)) == {"h1": 3, "h2": 3} and c,
                       timeout=20, what="h3's tasks running on h1 and h2")
    assert sum(moved.values()) == 6


def test_a_partitioned_host_s_tasks_move_and_its_stale_containers_go(
    hosts: HostCluster,
) -> None:
    hosts.partition("h2")
    eventually(lambda: hosts.node_state("h2") == "down", timeout=10, what="h2 down")
    eventually(lambda: running_by_node(hosts) == {"h1": 3, "h3": 3}, timeout=20,
               what="h2's tasks running on h1 and h3")
    # Cut off, h2's engine still runs its old containers.
    assert engine_containers(hosts)["h2"] == 2
    hosts.heal("h2")
    eventually(lambda: hosts.node_state("h2") == "ready", timeout=30, what="h2 back")
    eventually(lambda: engine_containers(hosts) == {"h1": 3, "h2": 0, "h3": 3}, timeout=30,
               what="stale containers removed from h2")
    consistently(lambda: sum(engine_containers(hosts).values()) == 6, duration=2,
                 what="exactly 6 replicas")


def test_restarting_the_manager_marks_no_node_down(hosts: HostCluster) -> None:
    hosts.restart_manager()
    # Through the startup grace (10 s) and beyond: every node stays ready.
    consistently(lambda: all(hosts.node_state(n) == "ready" for n in hosts.names),
                 duration=13, interval=0.5, what="all nodes ready")
    assert running_by_node(hosts) == {"h1": 2, "h2": 2, "h3": 2}
