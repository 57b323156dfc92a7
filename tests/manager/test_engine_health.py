"""A node whose engine stops answering, on an in-process cluster: a real manager and three
agents over gRPC on loopback, each on the in-memory executor. The node stays ready with its
tasks, takes nothing new, and takes new tasks again by itself once its engine answers; and a
fault in applying an agent's message is logged without ending its session."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pathlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest

from podium.agent.agent import Agent
from podium.manager import dispatcher as dispatcher_module
from podium.manager.manager import Manager
from podium.v1 import control, control_grpc, objects
from tests.fakes import FakeExecutor
from tests.helpers import eventually_async

READY = objects.NodeStatus.STATE_READY
RUNNING = objects.TASK_STATE_RUNNING


class InProcessCluster:
    def __init__(self, manager: Manager, agents: dict[str, Agent],
                 executors: dict[str, FakeExecutor], stub: control_grpc.ControlStub) -> None:
        self.manager, self.agents, self.executors, self.stub = manager, agents, executors, stub

    async def nodes(self) -> dict[str, objects.Node]:
        reply = await self.stub.ListNodes(control.ListNodesRequest())
        return {n.description.name: n for n in reply.nodes}

    async def tasks(self, service: str) -> list[objects.Task]:
        reply = await self.stub.ListTasks(control.ListTasksRequest(service=service))
        return list(reply.tasks)

    async def running(self, service: str) -> dict[str, str]:
        """Task id -> node name of the service's running tasks that are meant to run."""
        names = {n.id: name for name, n in (await self.nodes()).items()}
        return {t.id: names.get(t.node_id, "") for t in await self.tasks(service)
                if t.status.state == RUNNING and t.desired_state == RUNNING}

    async def create(self, name: str, replicas: int, *constraints: str) -> None:
        spec = objects.ServiceSpec(name=name, replicas=replicas)
        spec.container.image = "app:1"
        spec.placement.constraints.extend(constraints)
        await self.stub.CreateService(control.CreateServiceRequest(spec=spec))


@contextlib.asynccontextmanager
async def cluster(tmp_path: pathlib.Path, hosts: int = 3,
                  prepare: Callable[[Agent], None] | None = None,
                  ) -> AsyncIterator[InProcessCluster]:
    manager = Manager(listen="127.0.0.1:0", data_dir=tmp_path / "manager")
    await manager.start()
    agents: dict[str, Agent] = {}
    executors: dict[str, FakeExecutor] = {}
    try:
        for i in range(1, hosts + 1):
            name = f"a{i}"
            executors[name] = FakeExecutor(call_timeout=1.0)
            agents[name] = Agent(manager=f"127.0.0.1:{manager.port}", name=name,
                                 node_id=f"node-{name}", executor=executors[name],
                                 engine_ping=(0.2, 0.5))
            if prepare is not None:
                prepare(agents[name])
            await agents[name].start()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{manager.port}") as channel:
            c = InProcessCluster(manager, agents, executors, control_grpc.ControlStub(channel))
            await eventually_async(lambda: _all_ready(c, hosts), timeout=10, what="agents ready")
            yield c
    finally:
        for executor in executors.values():
            executor.unwedge()
        for agent in agents.values():
            await agent.stop()
        await manager.stop()


async def _all_ready(c: InProcessCluster, count: int) -> bool:
    nodes = await c.nodes()
    return len(nodes) == count and all(n.status.state == READY for n in nodes.values())


async def test_a_node_whose_engine_stops_answering_keeps_its_tasks_and_takes_no_new_ones(
    tmp_path: pathlib.Path,
) -> None:
    async with cluster(tmp_path) as c:
        await c.create("web", 3)
        before = await eventually_async(lambda: _spread(c, "web", 3),
                                        timeout=10, what="web on every node")
        c.executors["a2"].wedge()
        a2 = await eventually_async(lambda: _node_if(c, "a2",
                                                     lambda n: n.status.engine_unresponsive),
                                    timeout=5, what="a2's engine reported not answering")
        assert a2.status.state == READY
        assert "did not answer" in a2.status.engine_error
        # A new service lands on a1 and a3 only, and converges.
        await c.create("api", 4)
        api = await eventually_async(lambda: _count(c, "api", 4), timeout=10, what="api running")
        assert set(api.values()) == {"a1", "a3"}
        # a2's task is kept: the same tasks still run, nothing was replaced.
        assert await c.running("web") == before
        # Its engine answers again: a2 takes new tasks by itself.
        c.executors["a2"].unwedge()
        await eventually_async(lambda: _node_if(c, "a2",
                                                lambda n: not n.status.engine_unresponsive),
                               timeout=5, what="a2's engine answering again")
        await c.create("pinned", 1, "node.name == a2")
        pinned = await eventually_async(lambda: _count(c, "pinned", 1),
                                        timeout=10, what="a task placed on a2")
        assert set(pinned.values()) == {"a2"}
        assert await c.running("web") == before


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
        await c.create("web", 1)
        await eventually_async(lambda: _true(not broken["left"]),
                               timeout=10, what="a status report failed to apply")
        logged = [r for r in caplog.records if r.exc_info and "could not apply" in r.getMessage()]
        assert logged and "node-a1" in logged[0].getMessage()
        # Later reports still arrive on the same session.
        await c.create("api", 1)
        await eventually_async(lambda: _count(c, "api", 1), timeout=10, what="api running")
        nodes = await c.nodes()
        assert nodes["a1"].status.state == READY
        assert not [r for r in caplog.records if "is suspect" in r.getMessage()
                    or "is down" in r.getMessage()]


async def _node_if(c: InProcessCluster, name: str,
                   fn: Callable[[objects.Node], bool]) -> objects.Node | None:
    node = (await c.nodes()).get(name)
    return node if node is not None and fn(node) else None


async def _count(c: InProcessCluster, service: str, count: int) -> dict[str, str] | None:
    running = await c.running(service)
    return running if len(running) == count else None


async def _spread(c: InProcessCluster, service: str, count: int) -> dict[str, str] | None:
    running = await _count(c, service, count)
    return running if running and len(set(running.values())) == count else None


async def _true(value: bool) -> bool:
    return value


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

    async def close(self) -> None:
        pass


async def test_a_hung_mesh_holds_up_no_assignment(tmp_path: pathlib.Path) -> None:
    mesh = HangingMesh()

    def hang(agent: Agent) -> None:
        agent._mesh = mesh  # type: ignore[assignment]

    async with cluster(tmp_path, hosts=1, prepare=hang) as c:
        await eventually_async(lambda: _true(mesh.applies > 0),
                               timeout=5, what="the routing tables reached the mesh")
        # The mesh never finishes applying them, yet assignments keep flowing.
        await c.create("web", 2)
        await eventually_async(lambda: _count(c, "web", 2), timeout=10, what="web running")
