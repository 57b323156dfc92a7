"""A node whose engine stops answering, on an in-process cluster (tests/inprocess.py): a real
manager and agents over gRPC on loopback, each on the in-memory executor. The node stays ready
with its tasks, takes nothing new, and takes new tasks again by itself once its engine answers;
and a fault in applying an agent's message is logged without ending its session."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pathlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from podium.agent.agent import Agent
from podium.manager import dispatcher as dispatcher_module
from podium.v1 import objects
from tests.helpers import eventually_async
from tests.inprocess import InProcessCluster, in_process_cluster

READY = objects.NodeStatus.STATE_READY


@contextlib.asynccontextmanager
async def cluster(tmp_path: pathlib.Path, hosts: int = 3,
                  prepare: Callable[[Agent], None] | None = None,
                  ) -> AsyncIterator[InProcessCluster]:
    """Nodes node-a, node-b, ...: engine calls time out after 1 s, the engine is pinged every
    0.2 s with a 0.5 s deadline."""
    async with in_process_cluster(tmp_path, agents=hosts, prepare=prepare,
                                  executor_args={"call_timeout": 1.0},
                                  agent_args={"engine_ping": (0.2, 0.5)}) as c:
        yield c


async def _create(c: InProcessCluster, name: str, replicas: int, *constraints: str) -> None:
    await c.create(name, replicas=replicas,
                   placement=objects.Placement(constraints=list(constraints)))


async def test_a_node_whose_engine_stops_answering_keeps_its_tasks_and_takes_no_new_ones(
    tmp_path: pathlib.Path,
) -> None:
    async with cluster(tmp_path) as c:
        await _create(c, "web", 3)
        before = await eventually_async(lambda: _spread(c, "web", 3),
                                        timeout=10, what="web on every node")
        c.executors["node-b"].wedge()
        wedged = await eventually_async(lambda: _node_if(c, "node-b",
                                                     lambda n: n.status.engine_unresponsive),
                                    timeout=5, what="node-b's engine reported not answering")
        assert wedged.status.state == READY
        assert "did not answer" in wedged.status.engine_error
        # A new service lands on node-a and node-c only, and converges.
        await _create(c, "api", 4)
        api = await eventually_async(lambda: _count(c, "api", 4), timeout=10, what="api running")
        assert set(api.values()) == {"node-a", "node-c"}
        # None was even tried there (a create on its engine would time out and be replaced).
        assert not [t for t in c.tasks("api") if t.node_id == c.node_ids["node-b"]]
        # node-b's task is kept: the same tasks still run, nothing was replaced.
        assert c.placement("web") == before
        # Its engine answers again: node-b takes new tasks by itself.
        c.executors["node-b"].unwedge()
        await eventually_async(lambda: _node_if(c, "node-b",
                                                lambda n: not n.status.engine_unresponsive),
                               timeout=5, what="node-b's engine answering again")
        await _create(c, "pinned", 1, "node.name == node-b")
        pinned = await eventually_async(lambda: _count(c, "pinned", 1),
                                        timeout=10, what="a task placed on node-b")
        assert set(pinned.values()) == {"node-b"}
        assert c.placement("web") == before


async def test_a_message_that_cannot_be_applied_is_logged_and_the_session_goes_on(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = dispatcher_module._apply_status
    broken = {"left": 1}

    def flaky(tx: Any, node_id: str, updates: Any) -> None:
        if broken["left"]:
            broken["left"] -= 1
            raise RuntimeError("store fault")
        real(tx, node_id, updates)

    monkeypatch.setattr(dispatcher_module, "_apply_status", flaky)
    caplog.set_level(logging.INFO)
    async with cluster(tmp_path, hosts=1) as c:
        await _create(c, "web", 1)
        await eventually_async(lambda: not broken["left"],
                               timeout=10, what="a status report failed to apply")
        logged = [r for r in caplog.records if r.exc_info and "could not apply" in r.getMessage()]
        assert logged and c.node_ids["node-a"] in logged[0].getMessage()
        # Later reports still arrive on the same session.
        await _create(c, "api", 1)
        await eventually_async(lambda: _count(c, "api", 1), timeout=10, what="api running")
        node = c.store_view.node_by_name("node-a")
        assert node is not None and node.status.state == READY
        assert not [r for r in caplog.records if "is suspect" in r.getMessage()
                    or "is down" in r.getMessage()]


def _node_if(c: InProcessCluster, name: str,
             fn: Callable[[objects.Node], bool]) -> objects.Node | None:
    node = c.store_view.node_by_name(name)
    return node if node is not None and fn(node) else None


def _count(c: InProcessCluster, service: str, count: int) -> dict[str, str] | None:
    running = c.placement(service)
    return running if len(running) == count else None


def _spread(c: InProcessCluster, service: str, count: int) -> dict[str, str] | None:
    running = _count(c, service, count)
    return running if running and len(set(running.values())) == count else None


def test_podium_nodes_shows_an_engine_that_does_not_answer() -> None:
    from podium.client import views

    node = objects.Node(id="n1")
    node.status.state = READY
    assert views.node_row(node, 0)["state_text"] == "ready"
    node.status.engine_unresponsive = True
    row = views.node_row(node, 0)
    assert row["state_text"] == "ready, engine not answering"
    assert row["state"] == "ready" and row["engine_answering"] is False


class HangingMesh:
    """A mesh whose every apply hangs (a stuck data path), as far as the agent can tell."""

    def __init__(self) -> None:
        self.applies = 0

    async def apply(self, listeners: object) -> list[str]:
        self.applies += 1
        await asyncio.Event().wait()
        return []

    def stats(self) -> dict[int, dict[str, int]]:
        return {}

    def requests(self) -> dict[int, dict[str, int]]:
        return {}

    async def close(self) -> None:
        pass


async def test_a_hung_mesh_holds_up_no_assignment(tmp_path: pathlib.Path) -> None:
    mesh = HangingMesh()

    def hang(agent: Agent) -> None:
        agent._mesh = mesh  # type: ignore[assignment]

    async with cluster(tmp_path, hosts=1, prepare=hang) as c:
        await eventually_async(lambda: mesh.applies > 0,
                               timeout=5, what="the routing tables reached the mesh")
        # The mesh never finishes applying them, yet assignments keep flowing.
        await _create(c, "web", 2)
        await eventually_async(lambda: _count(c, "web", 2), timeout=10, what="web running")
