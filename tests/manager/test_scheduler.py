"""The scheduler's commit re-checks a plan made on a snapshot against the state at commit time.

A plan is computed on one view of the store and committed later (with a store that is not in
this process, or a scheduler that plans off the event loop, other writes land in between). Each
test makes a plan, changes the store the way another writer would, then commits the stale plan.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from podium.manager import placement
from podium.manager.scheduler import commit_plan
from podium.manager.store import SqliteStore, WriteTx
from podium.v1 import objects
from tests.manager.test_placement import NOW, GiB, node, running, task

PENDING = objects.TASK_STATE_PENDING
ASSIGNED = objects.TASK_STATE_ASSIGNED


@pytest.fixture
def store(tmp_path: pathlib.Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "state.db")
    yield s
    s.close()


def put(store: SqliteStore, *objs: objects.Node | objects.Task) -> None:
    def apply(tx: WriteTx) -> None:
        for obj in objs:
            tx.create(obj)

    store.update_now(apply)


def plan_now(store: SqliteStore) -> placement.Plan:
    view = store.view()
    tasks = list(view.tasks())
    pending = [t for t in tasks if t.status.state == PENDING]
    plan = placement.schedule(list(view.nodes()), tasks, pending, NOW)
    plan.revision = view.revision  # as the scheduler records it
    return plan


def state_of(store: SqliteStore, task_id: str) -> tuple[int, str]:
    found = store.view().get_task(task_id)
    assert found is not None
    return found.status.state, found.node_id


@pytest.mark.parametrize("availability", [objects.NodeSpec.AVAILABILITY_DRAIN,
                                          objects.NodeSpec.AVAILABILITY_PAUSE])
def test_a_node_drained_or_paused_after_the_plan_gets_nothing(
    store: SqliteStore, availability: objects.NodeSpec.Availability
) -> None:
    put(store, node("n1"), task("t1"))
    plan = plan_now(store)
    assert [(d.task_id, d.node_id) for d in plan.placed] == [("t1", "n1")]

    def drain(tx: WriteTx) -> None:
        n = tx.get_node("n1")
        assert n is not None
        n.spec.availability = availability
        tx.update(n)

    store.update_now(drain)
    assert store.update_now(lambda tx: commit_plan(tx, plan)) == 0
    assert state_of(store, "t1") == (PENDING, "")


def test_memory_taken_after_the_plan_is_not_given_twice(store: SqliteStore) -> None:
    put(store, node("n1", memory=2 * GiB), task("t1", memory=GiB))
    plan = plan_now(store)
    assert len(plan.placed) == 1
    # Another writer places a 1.5 GiB task on n1 meanwhile: 0.5 GiB is left, t1 needs 1.
    put(store, running("other", "n1", service="db", memory=GiB + GiB // 2))
    assert store.update_now(lambda tx: commit_plan(tx, plan)) == 0
    assert state_of(store, "t1") == (PENDING, "")


def test_cpu_and_host_ports_are_rechecked_too(store: SqliteStore) -> None:
    put(store, node("n1", cpus=2), node("n2", cpus=2),
        task("cpu", cpus=2), task("port", service="api", host_port=8080))
    plan = plan_now(store)
    assert len(plan.placed) == 2
    targets = {d.task_id: d.node_id for d in plan.placed}
    put(store, running("hog", targets["cpu"], service="db", cpus=1),
        running("binder", targets["port"], service="lb", host_port=8080))
    assert store.update_now(lambda tx: commit_plan(tx, plan)) == 0
    assert state_of(store, "cpu") == (PENDING, "")
    assert state_of(store, "port") == (PENDING, "")


def test_one_commit_counts_its_own_assignments(store: SqliteStore) -> None:
    """Two decisions that each fit alone but not together: only the first is committed."""
    put(store, node("n1", memory=2 * GiB), task("a", memory=GiB), task("b", memory=GiB))
    plan = plan_now(store)
    assert len(plan.placed) == 2
    put(store, running("other", "n1", service="db", memory=GiB))
    assert store.update_now(lambda tx: commit_plan(tx, plan)) == 1
    assert sorted(state_of(store, t)[0] for t in ("a", "b")) == [PENDING, ASSIGNED]


def test_a_plan_that_still_fits_is_committed(store: SqliteStore) -> None:
    put(store, node("n1", memory=4 * GiB), running("old", "n1", service="db", memory=GiB),
        task("t1", memory=GiB), task("t2", memory=GiB, slot=2))
    plan = plan_now(store)
    put(store, running("other", "n1", service="db", memory=GiB))
    # Finished and ended tasks, and the pending ones being placed, hold nothing.
    put(store, running("gone", "n1", service="db", memory=8 * GiB,
                       state=objects.TASK_STATE_FAILED))
    assert store.update_now(lambda tx: commit_plan(tx, plan)) == 2
    assert state_of(store, "t1") == (ASSIGNED, "n1")
    assert state_of(store, "t2") == (ASSIGNED, "n1")


def test_a_plan_committed_with_nothing_changed_since_is_not_checked_again(
        store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The commit follows the snapshot with nothing written in between (SQLite, no await):
    re-reading every task of every node would double the cost of placing 10,000 tasks."""
    put(store, node("n1", memory=4 * GiB), task("t1", memory=GiB), task("t2", memory=GiB, slot=2))
    plan = plan_now(store)

    def no_fit(*args: object) -> None:
        raise AssertionError("a node's fit was read again")
    monkeypatch.setattr(placement, "NodeFit", no_fit)
    assert store.update_now(lambda tx: commit_plan(tx, plan)) == 2
    assert state_of(store, "t2") == (ASSIGNED, "n1")
