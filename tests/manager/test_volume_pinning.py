"""A replica holding a named local volume stays on the node with its data.

Pure placement (no store), the scheduler's commit recording the node, and the orchestrator
carrying it into the slot's next task.
"""

from __future__ import annotations

import pathlib

from podium.manager.orchestrator import Orchestrator
from podium.manager.placement import Decision, schedule
from podium.manager.scheduler import commit_plan
from podium.manager.store import SqliteStore, WriteTx
from podium.v1 import objects
from tests.manager.test_placement import NOW, node, task

DOWN = objects.NodeStatus.STATE_DOWN
MAY_MOVE = "x-podium-may-move: true lets it start elsewhere"


def with_volume(t: objects.Task, *, source: str = "shop_data", driver: str = "",
                may_move: bool = False) -> objects.Task:
    t.spec.container.mounts.add(type=objects.Mount.TYPE_VOLUME, source=source, target="/data",
                                driver=driver, may_move=may_move)
    return t


def test_a_pinned_replica_goes_only_to_its_node() -> None:
    nodes = [node("n1"), node("n2"), node("n3")]
    pending = [with_volume(task(f"t{i}", slot=i)) for i in (1, 2, 3)]
    for t in pending:
        t.pinned_node = "n2"
    plan = schedule(nodes, [], pending, NOW)
    assert sorted(plan.placed, key=lambda d: d.task_id) == [
        Decision("t1", "n2"), Decision("t2", "n2"), Decision("t3", "n2")]


def test_a_pinned_replica_waits_for_its_node_with_the_reason() -> None:
    nodes = [node("n1"), node("n2", name="h2", state=DOWN)]
    pending = with_volume(task("t1", slot=1))
    pending.pinned_node = "n2"
    plan = schedule(nodes, [], [pending], NOW)
    assert plan.placed == []
    [unplaced] = plan.unplaced
    assert unplaced.reason == (
        "waits for node h2, which holds its volume data (shop_data): it is not ready; " + MAY_MOVE)


def test_a_pinned_replica_whose_node_is_gone_says_so() -> None:
    pending = with_volume(task("t1", slot=1))
    pending.pinned_node = "n9"
    [unplaced] = schedule([node("n1")], [], [pending], NOW).unplaced
    assert unplaced.reason.startswith("waits for node n9, which holds its volume data (shop_data)")


def test_a_new_task_of_a_slot_follows_the_slot_pin_of_an_older_task() -> None:
    # An update's new task carries no pin: it inherits the slot's.
    old = with_volume(task("old", slot=1, node_id="n2", state=objects.TASK_STATE_SHUTDOWN,
                           desired=objects.TASK_STATE_SHUTDOWN))
    old.pinned_node = "n2"
    new = with_volume(task("new", slot=1))
    plan = schedule([node("n1"), node("n2"), node("n3")], [old, new], [new], NOW)
    assert plan.placed == [Decision("new", "n2")]


def test_may_move_remote_driver_or_no_pin_places_anywhere() -> None:
    nodes = [node("n1"), node("n2", state=DOWN)]
    movable = with_volume(task("a", slot=1), may_move=True)
    remote = with_volume(task("b", service="db", slot=1), driver="nfs-plugin")
    for t in (movable, remote):
        t.pinned_node = "n2"
    first = with_volume(task("c", service="kv", slot=1))  # not pinned yet: anywhere
    plan = schedule(nodes, [], [movable, remote, first], NOW)
    assert {d.task_id: d.node_id for d in plan.placed} == {"a": "n1", "b": "n1", "c": "n1"}


def test_the_commit_records_the_node_of_a_pinning_replica(tmp_path: pathlib.Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    try:
        pinned = with_volume(task("t1", slot=1))
        movable = with_volume(task("t2", slot=2), may_move=True)
        store.update_now(lambda tx: [tx.create(o) for o in (node("n1"), pinned, movable)])
        plan = schedule(list(store.view().nodes()), [], [pinned, movable], NOW)
        store.update_now(lambda tx: commit_plan(tx, plan))
        view = store.view()
        assert [view.get_task(i).pinned_node for i in ("t1", "t2")] == ["n1", ""]  # type: ignore[union-attr]
    finally:
        store.close()


def test_the_orchestrator_carries_the_pin_into_the_replacement(tmp_path: pathlib.Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    orch = Orchestrator(store=store)
    try:
        svc = objects.Service(id="s1", spec_version=1)
        svc.spec.name, svc.spec.replicas = "shop_db", 1
        svc.spec.container.image = "db"
        svc.spec.container.mounts.add(type=objects.Mount.TYPE_VOLUME, source="shop_data",
                                      target="/data")
        n1 = node("n1")
        store.update_now(lambda tx: (tx.create(n1), tx.create(svc)))
        store.update_now(lambda tx: orch._reconcile_service(tx, "s1"))

        def run_on_n1(tx: WriteTx) -> None:
            [t] = tx.tasks_of_service("s1")
            t.node_id, t.pinned_node = "n1", "n1"
            t.status.state = objects.TASK_STATE_RUNNING
            tx.update(t)

        store.update_now(run_on_n1)

        def node_down(tx: WriteTx) -> None:
            n = tx.get_node("n1")
            assert n is not None
            n.status.state = DOWN
            tx.update(n)

        store.update_now(node_down)
        store.update_now(lambda tx: orch._reconcile_service(tx, "s1"))
        live = [t for t in store.view().tasks_of_service("s1")
                if t.desired_state == objects.TASK_STATE_RUNNING]
        [replacement] = live
        assert not replacement.node_id
        assert replacement.pinned_node == "n1"
    finally:
        store.close()
