"""The control API, the reaper, the worker and the session on the in-process cluster."""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

import grpc
import pytest

from podium.agent.session import Outbox
from podium.manager.store import SqliteStore
from podium.v1 import control, dispatcher, objects
from tests.helpers import eventually_async
from tests.inprocess import InProcessCluster, in_process_cluster

REMOVED = objects.TASK_STATE_REMOVED


async def rpc_error(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call  # type: ignore[misc]
    return err.value


@pytest.mark.parametrize(("field", "value", "named"), [
    ("name", "-bad", "spec.name '-bad'"),
    ("replicas", 10_001, "spec.replicas 10001: at most 10000"),
    ("image", " ", "spec.container.image is empty"),
    ("constraint", "zone = a", "spec.placement.constraints: invalid constraint"),
    ("max_failure_ratio", 1.5, "service 'web': spec.update_config.max_failure_ratio 1.5: "
                               "expected a number from 0 to 1"),
])
async def test_control_api_errors_name_the_field(mini: InProcessCluster, field: str,
                                                 value: object, named: str) -> None:
    spec = objects.ServiceSpec(name="web", replicas=1)
    spec.container.image = "app:1"
    if field == "name":
        spec.name = str(value)
    elif field == "replicas":
        spec.replicas = int(value)  # type: ignore[call-overload]
    elif field == "image":
        spec.container.image = str(value)
    elif field == "max_failure_ratio":
        spec.update_config.max_failure_ratio = float(value)  # type: ignore[arg-type]
    else:
        spec.placement.constraints.append(str(value))
    err = await rpc_error(mini.api.CreateService(control.CreateServiceRequest(spec=spec)))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert named in (err.details() or "")


async def test_control_api_refs_and_versions(mini: InProcessCluster) -> None:
    web = await mini.create("web")
    err = await rpc_error(mini.api.GetService(control.GetRequest(ref="nope")))
    assert (err.code(), err.details()) == (grpc.StatusCode.NOT_FOUND, "no service 'nope'")
    found = await mini.api.GetService(control.GetRequest(ref=web.id[:6]))
    assert found.service.id == web.id  # a unique id prefix
    stale = control.UpdateServiceRequest(service_id=web.id, version=web.meta.version + 7,
                                         spec=web.spec)
    err = await rpc_error(mini.api.UpdateService(stale))
    assert err.code() == grpc.StatusCode.ABORTED and "read it again" in (err.details() or "")
    spec = objects.ServiceSpec(name="global", mode=objects.ServiceSpec.MODE_GLOBAL)
    spec.container.image = "app:1"
    await mini.api.CreateService(control.CreateServiceRequest(spec=spec))
    err = await rpc_error(mini.api.ScaleService(
        control.ScaleServiceRequest(ref="global", replicas=3)))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    await mini.wait_running("global", 2)  # one per node
    await mini.api.RemoveService(control.RemoveServiceRequest(ref="global"))
    await mini.api.RemoveService(control.RemoveServiceRequest(ref="web"))


async def test_a_watch_that_falls_behind_is_told_to_reconnect(tmp_path: pathlib.Path) -> None:
    async with in_process_cluster(tmp_path, agents=0, watch_limit=10) as c:
        watch = c.api.WatchEvents(control.WatchEventsRequest(kinds=["service", "task"]))
        # The call subscribes in the background: make changes until its first event comes.
        first = asyncio.ensure_future(watch.read())
        for n in range(100):
            await c.create(f"s{n}", replicas=0)
            if (await asyncio.wait({first}, timeout=0.05))[0]:
                break
        await first
        # 50 tasks created in one transaction: 50 changes at once, the limit is 10.
        await c.scale("s0", 50)
        async with asyncio.timeout(10):
            err = await rpc_error(read_until_error(watch))
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "more than 10 changes behind" in (err.details() or "")
        await c.scale("s0", 0)


async def read_until_error(watch: Any) -> None:
    for _ in range(1000):
        await watch.read()


async def test_scale_down_reaps_tasks_once_containers_are_gone(mini: InProcessCluster) -> None:
    await mini.create("web", replicas=4)
    await mini.wait_running("web", 4)
    await mini.scale("web", 1)
    await eventually_async(lambda: len(mini.tasks("web")) == 1, what="3 tasks reaped")
    assert sum(len(mini.containers(n)) for n in ("node-a", "node-b")) == 1
    await mini.api.RemoveService(control.RemoveServiceRequest(ref="web"))
    await eventually_async(lambda: not mini.store_view.tasks() and not mini.containers("node-a")
                           and not mini.containers("node-b"), what="all reaped and removed")


async def test_a_down_node_s_removed_tasks_are_reaped_at_once(tmp_path: pathlib.Path) -> None:
    # A short restart grace: a stopping agent says it restarts, and its node goes down once
    # the grace is over without it.
    async with in_process_cluster(tmp_path, restart_grace=0.3) as mini:
        await mini.create("web", replicas=2)
        await mini.wait_running("web", 2)
        await mini.stop_agent("node-b")
        await eventually_async(lambda: mini.node_state("node-b") == "down", what="node-b down")
        await mini.api.RemoveService(control.RemoveServiceRequest(ref="web"))
        # node-b cannot confirm; its task goes anyway (its agent cleans up when it returns).
        await eventually_async(lambda: not list(mini.store_view.tasks()), what="all reaped")
        await mini.start_agent("node-b")
        await eventually_async(lambda: not mini.containers("node-b"), what="node-b cleaned up")


async def test_the_worker_adopts_its_containers_after_an_agent_restart(
    mini: InProcessCluster,
) -> None:
    await mini.create("web", replicas=2)
    await mini.wait_running("web", 2)
    before = {n: dict(mini.executors[n]._containers) for n in ("node-a", "node-b")}
    await mini.stop_agent("node-a")
    await mini.start_agent("node-a")
    await mini.wait_running("web", 2)
    assert mini.executors["node-a"]._containers.keys() == before["node-a"].keys()
    assert all(c.running for c in mini.executors["node-a"]._containers.values())
    await mini.api.RemoveService(control.RemoveServiceRequest(ref="web"))
    await eventually_async(lambda: not list(mini.store_view.tasks()), what="all reaped")


async def test_agents_reconnect_to_a_restarted_manager(mini: InProcessCluster) -> None:
    await mini.create("web", replicas=2)
    tasks = await mini.wait_running("web", 2)
    await mini.stop_manager()
    await mini.start_manager()  # same port and data: the agents' sessions come back
    await eventually_async(lambda: mini.node_state("node-a") == mini.node_state("node-b")
                           == "ready", what="both nodes back")
    assert {t.id for t in await mini.wait_running("web", 2)} == {t.id for t in tasks}
    await mini.api.RemoveService(control.RemoveServiceRequest(ref="web"))
    await eventually_async(lambda: not list(mini.store_view.tasks()), what="all reaped")


async def test_a_stopping_manager_writes_no_node_state(mini: InProcessCluster) -> None:
    """Its sessions end as it stops: that says nothing of the nodes, which stay as they were in
    the store (the next start's grace decides), instead of each one stored suspect."""
    await mini.create("web", replicas=2)
    await mini.wait_running("web", 2)
    assert mini.manager is not None
    store = mini.manager.store
    versions = {n.id: n.meta.version for n in store.view().nodes()}
    await mini.stop_manager()
    reopened = SqliteStore(mini.root / "manager" / "state.db")
    try:
        nodes = list(reopened.view().nodes())
    finally:
        reopened.close()
    assert {n.id: n.meta.version for n in nodes} == versions
    assert {n.status.state for n in nodes} == {objects.NodeStatus.STATE_READY}


def test_the_agent_outbox_is_bounded() -> None:
    outbox = Outbox(limit=3)
    for _ in range(3):
        outbox.put(dispatcher.AgentMessage(heartbeat=dispatcher.Heartbeat()))
    assert not outbox.full.is_set()
    outbox.put(dispatcher.AgentMessage(heartbeat=dispatcher.Heartbeat()))
    assert outbox.full.is_set()
    assert outbox._queue.empty()  # dropped: the next session resends every status
