"""The dispatcher's sessions on the in-process cluster: complete sets, forward-only statuses,
an agent that falls behind, and load reports standing in for heartbeats."""

from __future__ import annotations

import asyncio
import pathlib
from collections import Counter
from typing import Any

import grpc

from podium.v1 import control, dispatcher, objects
from tests.fakes import RawAgent
from tests.helpers import eventually_async
from tests.inprocess import InProcessCluster, in_process_cluster

RUNNING = objects.TASK_STATE_RUNNING


async def test_a_returning_agent_gets_the_complete_set(mini: InProcessCluster) -> None:
    await mini.create("web", replicas=4)
    await mini.wait_running("web", 4)
    await mini.stop_agent("node-a")
    # While node-a is away, its tasks are scaled away: only the complete set can tell it.
    await mini.scale("web", 0)
    await eventually_async(lambda: all(t.desired_state == objects.TASK_STATE_REMOVED
                                       for t in mini.tasks("web")), what="tasks ended")
    assert mini.containers("node-a")  # still there, as on a real host whose agent is down
    await mini.start_agent("node-a")
    await eventually_async(lambda: not mini.containers("node-a"), what="node-a cleaned up")
    await eventually_async(lambda: not mini.tasks("web"), what="tasks reaped")


async def test_statuses_only_move_forward(mini: InProcessCluster) -> None:
    await mini.stop_agent("node-b")
    await mini.create("one")
    (task,) = await mini.wait_running("one", 1)
    node_id = mini.node_ids["node-a"]
    await mini.stop_agent("node-a")
    async with RawAgent(mini.address, "node-a", node_id) as raw:
        await eventually_async(lambda: mini.node_state("node-a") == "ready", what="raw ready")
        stale = objects.TaskStatus(state=objects.TASK_STATE_STARTING, message="stale")
        done = objects.TaskStatus(state=objects.TASK_STATE_COMPLETE, message="exit code 0")
        raw.report((task.id, stale), ("no-such-task", done))
        later = objects.TaskStatus(state=RUNNING, message="running again")
        raw.report((task.id, later))  # same state, new details: applied
        await eventually_async(lambda: mini.store_view.get_task(task.id).status.message
                               == "running again", what="same-state update applied")
        assert mini.store_view.get_task(task.id).status.state == RUNNING
        # A report for a task of another node is ignored.
        async with RawAgent(mini.address, "intruder", "i" * 20) as other:
            other.report((task.id, done))
            await asyncio.sleep(0.2)  # deliberate: nothing to wait for but its absence
        assert mini.store_view.get_task(task.id).status.state == RUNNING


async def test_an_agent_that_falls_behind_is_cut_off_and_resynced(
    tmp_path: pathlib.Path,
) -> None:
    async with in_process_cluster(tmp_path, agents=0, outbox_limit=4) as c:
        async with RawAgent(c.address, "slow", "s" * 20, read=False) as raw:
            await eventually_async(lambda: c.node_state("slow") == "ready", what="slow ready")
            # Big assignments, one per task: the stream's window fills, then the outbox.
            env = {f"K{i}": "v" * 1000 for i in range(100)}
            for n in range(60):
                spec = objects.ServiceSpec(name=f"s{n}", replicas=1)
                spec.container.image = "app:1"
                spec.container.env.update(env)
                await c.api.CreateService(control.CreateServiceRequest(spec=spec))
                await eventually_async(lambda n=n: c.tasks(f"s{n}") and all(
                    t.node_id for t in c.tasks(f"s{n}")), what=f"s{n} assigned")
            await eventually_async(lambda: c.node_state("slow") != "ready", timeout=10,
                                   what="session closed")
            await raw.read_all()
            assert raw.error is not None
            assert raw.error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "reconnect for the complete set" in (raw.error.details() or "")
        # Reconnecting gets the complete set: every task the node holds, in one message larger
        # than gRPC's default 4 MiB limit (agents accept up to MAX_MESSAGE_BYTES).
        async with RawAgent(c.address, "slow", "s" * 20) as again:
            def complete() -> dispatcher.Assignments | None:
                for m in again.received:
                    if m.HasField("assignments"):
                        return m.assignments
                return None

            full = await eventually_async(complete, what="complete set")
            assert full.type == dispatcher.Assignments.TYPE_COMPLETE
            assert full.ByteSize() > 4 << 20
            assert {t.id for t in full.tasks} == {
                t.id for t in c.store_view.tasks_of_node("s" * 20)}
        for n in range(60):
            await c.api.RemoveService(control.RemoveServiceRequest(ref=f"s{n}"))


async def _count_messages(monkeypatch: Any) -> Counter[str]:
    """Counts the kinds of message the dispatcher handles from now on."""
    from podium.manager.dispatcher import Dispatcher

    seen: Counter[str] = Counter()
    handle = Dispatcher._handle

    async def counting(self: Any, session: Any, message: dispatcher.AgentMessage) -> None:
        seen[message.WhichOneof("message") or ""] += 1
        await handle(self, session, message)

    monkeypatch.setattr(Dispatcher, "_handle", counting)
    return seen


async def test_load_reports_stand_in_for_heartbeats(tmp_path: pathlib.Path,
                                                    monkeypatch: Any) -> None:
    seen = await _count_messages(monkeypatch)
    async with in_process_cluster(tmp_path, agents=1, heartbeat_period=0.2,
                                  load_period=0.2) as mini:
        await eventually_async(lambda: seen["load"] >= 10, what="2 s of load reports")
        # One heartbeat, at the session's start; the reports kept the node ready throughout.
        assert seen["heartbeat"] == 1
        assert mini.node_state("node-a") == "ready"
        assert mini.manager is not None
        mini.agents["node-a"]._session.heartbeat_now()  # what a heartbeat says changed
        await eventually_async(lambda: seen["heartbeat"] == 2, what="the asked-for heartbeat")


async def test_heartbeats_go_when_load_reports_are_rarer(tmp_path: pathlib.Path,
                                                         monkeypatch: Any) -> None:
    seen = await _count_messages(monkeypatch)
    async with in_process_cluster(tmp_path, agents=1, heartbeat_period=0.2,
                                  load_period=1.0) as mini:
        await eventually_async(lambda: seen["heartbeat"] >= 8, what="heartbeats every 0.2 s")
        assert seen["load"] <= 3
        assert mini.node_state("node-a") == "ready"


async def test_a_restarted_manager_starts_at_the_period_of_the_nodes_it_knows(
        tmp_path: pathlib.Path) -> None:
    """Its agents reconnect all at once: told the period of the few sessions open so far, they
    would heartbeat at several times the rate the manager budgets for while it registers the
    rest. Until the startup grace ends, every node not down counts."""
    async with in_process_cluster(tmp_path, agents=3, heartbeat_period=0.2, load_period=0.2,
                                  heartbeats_per_second=5.0) as mini:
        assert mini.manager is not None
        assert mini.manager.dispatcher.heartbeat_period == 1.0  # 3 sessions
        await mini.stop_manager()
        for name in ("node-a", "node-b", "node-c"):
            await mini.stop_agent(name)
        await mini.start_manager()
        assert mini.manager is not None
        # No session open: the 3 nodes the store holds set the period.
        assert mini.manager.dispatcher.sessions_open == 0
        await eventually_async(lambda: mini.manager is not None
                               and mini.manager.dispatcher.heartbeat_period == 1.0,
                               timeout=2.0, what="the period of 3 nodes")
        for name in ("node-a", "node-b", "node-c"):
            await mini.start_agent(name)


async def test_the_period_grows_with_the_agents_and_every_agent_follows(
        tmp_path: pathlib.Path, monkeypatch: Any) -> None:
    from podium.manager.dispatcher import scaled_period

    assert scaled_period(1.0, 1500, 1500.0) == 1.0
    assert scaled_period(1.0, 3000, 1500.0) == 2.0
    assert scaled_period(1.0, 5000, 1500.0) == 3.5  # 3.33 s, in steps of 0.5 s
    assert scaled_period(1.0, 100_000, 0.0) == 1.0  # 0: fixed
    seen = await _count_messages(monkeypatch)
    # At most 5 reports a second: one agent at 0.2 s fits, three need 0.6 s, made 1 s.
    async with in_process_cluster(tmp_path, agents=1, heartbeat_period=0.2, load_period=0.2,
                                  heartbeats_per_second=5.0) as mini:
        assert mini.manager is not None
        dispatch = mini.manager.dispatcher
        assert dispatch.heartbeat_period == 0.2
        await mini.start_agent("node-b")
        await mini.start_agent("node-c")
        assert dispatch.heartbeat_period == 1.0

        async def sent_in(window: float) -> int:  # a measuring window, not a wait
            before = seen["load"] + seen["heartbeat"]
            await asyncio.sleep(window)
            return seen["load"] + seen["heartbeat"] - before

        # The agents are told within a second; 3 agents at 0.2 s would send 15 a second.
        for _ in range(5):
            if await sent_in(1.0) <= 5:
                break
        sent = await sent_in(3.0)
        assert 6 <= sent <= 12, sent  # ~1 a second each; 45 at the first period
        assert all(mini.node_state(n) == "ready" for n in ("node-a", "node-b", "node-c"))
        await mini.stop_agent("node-b")
        await mini.stop_agent("node-c")
        # Shrinks with a margin: 1 session is 1.1 for the rule, 0.22 s -> 0.5 s.
        assert dispatch.heartbeat_period == 0.5
        await eventually_async(lambda: mini.node_state("node-a") == "ready", what="node-a ready")
