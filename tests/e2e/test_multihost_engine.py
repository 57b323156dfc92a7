"""A host's engine that wedges or restarts under a running agent, on 3 simulated hosts.

Wedged (dockerd SIGSTOPped): the node shows "engine not answering" within seconds, stays ready
with its tasks (they keep serving through the mesh), takes nothing new, and takes new tasks again
by itself once the engine answers. Restarted (dockerd killed with -9 and started again, as a
package upgrade does): the agent reconnects, finds its container again (or restarts it), and
nothing is duplicated or replaced.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from podium.lab.hosts import HOSTNAME_HTTPD, HostCluster
from tests.helpers import IMAGE, consistently, eventually

pytestmark = [pytest.mark.engine, pytest.mark.multihost]

PORT = 8080


def service(name: str, replicas: int, *, port: int = 0, on: str = "") -> str:
    text = f"""
services:
  {name}:
    image: {IMAGE}
    command: ["sh", "-c", "{HOSTNAME_HTTPD}"]
    init: true
    stop_grace_period: 1s
"""
    if port:
        text += f'    ports: ["{port}:80"]\n'
    text += f"    deploy:\n      replicas: {replicas}\n"
    if on:
        text += f'      placement:\n        constraints: ["node.hostname == {on}"]\n'
    return text


@pytest.fixture
def hosts(tmp_path: pathlib.Path) -> Iterator[HostCluster]:
    with HostCluster(tmp_path / "hosts", hosts=3) as cluster:
        yield cluster


def deploy(hosts: HostCluster, name: str, text: str) -> str:
    return hosts.deploy(text, "--timeout", "60", name=name)


def running(hosts: HostCluster, name: str) -> dict[str, str]:
    """Task id -> node of the service's running tasks that are meant to run."""
    return {t["id"]: t["node"] for t in hosts.json("ps", name)
            if t["state"] == "running" and t["desired"] == "running"}


def node(hosts: HostCluster, name: str) -> dict[str, Any]:
    return next(n for n in hosts.json("nodes") if n["name"] == name)


def nodes_line(hosts: HostCluster, name: str) -> str:
    """The host's line of the `podium nodes` table."""
    return next(line for line in hosts.ok("nodes").splitlines()[1:]
                if line.split()[1:2] == [name])


def served_through(hosts: HostCluster, via: str, requests: int) -> set[str]:
    """GETs through `via`'s mesh port; every one must succeed. The replicas that answered."""
    url = f"http://{hosts.host(via).address}:{PORT}/"
    return {hosts.http_get("h1", url).strip() for _ in range(requests)}


def test_a_wedged_engine_keeps_its_tasks_and_takes_no_new_ones(hosts: HostCluster) -> None:
    deploy(hosts, "web", service("web", 3, port=PORT))
    web = eventually(lambda: (r := running(hosts, "web")) and sorted(r.values()) == [
        "h1", "h2", "h3"] and r, timeout=30, what="web on every host")
    eventually(lambda: len(served_through(hosts, "h1", 12)) == 3, timeout=15,
               what="the mesh reaching all 3 replicas")

    hosts.pause_engine("h2")
    try:
        paused = time.monotonic()
        eventually(lambda: "engine not answering" in nodes_line(hosts, "h2"), timeout=15,
                   interval=0.1, what="h2's engine shown not answering")
        detected = time.monotonic() - paused
        print(f"engine not answering shown after {detected:.1f} s")
        h2 = node(hosts, "h2")
        assert h2["state"] == "ready" and not h2["engine_answering"], h2
        # The other hosts keep serving, and h2's replica too (its container still runs).
        assert len(served_through(hosts, "h1", 12)) == 3
        # A new deploy lands on h1 and h3 only, and converges.
        assert "converged" in deploy(hosts, "api", service("api", 4))
        assert sorted(running(hosts, "api").values()) == ["h1", "h1", "h3", "h3"]
        # h2's task was not replaced: the same tasks run where they ran.
        assert running(hosts, "web") == web
        consistently(lambda: running(hosts, "web") == web, duration=3, interval=0.5,
                     what="web's tasks unchanged")
    finally:
        hosts.resume_engine("h2")

    eventually(lambda: node(hosts, "h2")["engine_answering"], timeout=15,
               what="h2's engine answering again")
    assert "engine not answering" not in nodes_line(hosts, "h2")
    assert "converged" in deploy(hosts, "pinned", service("pinned", 1, on="h2"))
    assert list(running(hosts, "pinned").values()) == ["h2"]
    assert running(hosts, "web") == web
    assert {h: len(hosts.containers(h, all=False)) for h in hosts.names} == {
        "h1": 3, "h2": 2, "h3": 3}


def test_an_engine_restarted_under_the_agent_duplicates_nothing(hosts: HostCluster) -> None:
    deploy(hosts, "web", service("web", 3, port=PORT))
    web = eventually(lambda: (r := running(hosts, "web")) and sorted(r.values()) == [
        "h1", "h2", "h3"] and r, timeout=30, what="web on every host")
    agent_pids = hosts._agent_pids(hosts.host("h2"))

    hosts.kill_engine("h2")
    eventually(lambda: not node(hosts, "h2")["engine_answering"], timeout=15,
               what="h2's engine shown not answering")
    # While its engine is down, the agent's session to the manager breaks and opens again
    # (here: the manager restarts), so it registers and gets its complete set without an engine.
    hosts.restart_manager()
    eventually(lambda: (n := node(hosts, "h2"))["state"] == "ready"
               and not n["engine_answering"], timeout=30, what="h2 registered again")
    hosts.start_engine("h2")

    def settled() -> bool:
        return (running(hosts, "web") == web and node(hosts, "h2")["engine_answering"]
                and len(hosts.containers("h2", all=False)) == 1)

    eventually(settled, timeout=30, interval=0.2,
               what="h2's task running again in one container, nothing replaced")
    # The same agent (it reconnected; it was not restarted), one container per task.
    assert hosts._agent_pids(hosts.host("h2")) == agent_pids
    consistently(lambda: running(hosts, "web") == web
                 and {h: len(hosts.containers(h)) for h in hosts.names} == dict.fromkeys(
                     hosts.names, 1), duration=3, interval=0.5, what="nothing duplicated")
    eventually(lambda: len(served_through(hosts, "h2", 12)) == 3, timeout=15,
               what="h2's mesh reaching all 3 replicas")
    # The engine's events reach the agent again: a replica killed on h2 is restarted in place.
    [container] = hosts.containers("h2", all=False)
    hosts.docker("h2", "kill", container)
    eventually(lambda: len(hosts.containers("h2", all=False)) == 1
               and running(hosts, "web") == web, timeout=15, what="restarted in place")
