"""The orchestrator's reconcile step on a real store, without an event loop."""

from __future__ import annotations

import pathlib
import time

from podium.manager.orchestrator import Orchestrator, restart_delay
from podium.manager.store import SqliteStore, WriteTx
from podium.v1 import objects

RUNNING = objects.TASK_STATE_RUNNING


def _store(tmp_path: pathlib.Path) -> tuple[SqliteStore, Orchestrator]:
    store = SqliteStore(tmp_path / "state.db")
    return store, Orchestrator(store=store)


def _service(replicas: int = 3, mode: int = objects.ServiceSpec.MODE_REPLICATED,
             constraints: tuple[str, ...] = ()) -> objects.Service:
    svc = objects.Service(id="s1", spec_version=1)
    svc.spec.name = "web"
    svc.spec.replicas = replicas
    svc.spec.mode = mode  # type: ignore[assignment]
    svc.spec.container.image = "podium/web:latest"
    svc.spec.placement.constraints.extend(constraints)
    return svc


def _node(id: str, zone: str) -> objects.Node:
    node = objects.Node(id=id)
    node.description.name = id
    node.description.labels["zone"] = zone
    node.status.state = objects.NodeStatus.STATE_READY
    return node


def _reconcile(store: SqliteStore, orch: Orchestrator) -> None:
    store.update_now(lambda tx: orch._reconcile_service(tx, "s1"))


def _live(store: SqliteStore) -> list[objects.Task]:
    tasks = store.view().tasks_of_service("s1")
    return sorted((t for t in tasks if t.desired_state <= RUNNING), key=lambda t: t.slot)


def test_replicated_fills_slots_and_scales_down_from_the_top(tmp_path: pathlib.Path) -> None:
    store, orch = _store(tmp_path)
    store.update_now(lambda tx: tx.create(_service(replicas=3)))
    _reconcile(store, orch)
    assert [t.slot for t in _live(store)] == [1, 2, 3]
    _reconcile(store, orch)  # idempotent
    assert len(store.view().tasks_of_service("s1")) == 3

    def scale(tx: WriteTx) -> None:
        svc = tx.get_service("s1")
        assert svc is not None
        svc.spec.replicas = 1
        tx.update(svc)

    store.update_now(scale)
    _reconcile(store, orch)
    assert [t.slot for t in _live(store)] == [1]
    ended = [t for t in store.view().tasks_of_service("s1") if t.slot > 1]
    assert {t.desired_state for t in ended} == {objects.TASK_STATE_REMOVED}


def test_a_failed_task_is_replaced_after_a_growing_delay(tmp_path: pathlib.Path) -> None:
    store, orch = _store(tmp_path)
    store.update_now(lambda tx: tx.create(_service(replicas=1)))
    _reconcile(store, orch)
    for attempt in (1, 2, 3):
        [task] = _live(store)

        def fail(tx: WriteTx, task_id: str = task.id) -> None:
            t = tx.get_task(task_id)
            assert t is not None
            t.status.state = objects.TASK_STATE_FAILED
            t.status.err = "No such image: x"
            tx.update(t)

        store.update_now(fail)
        _reconcile(store, orch)
        [replacement] = _live(store)
        assert replacement.slot == 1 and replacement.attempt == attempt
        delay = replacement.not_before.ToNanoseconds() / 1e9 - time.time()
        assert 0 < delay <= restart_delay(attempt)
        old = store.view().get_task(task.id)
        assert old is not None and old.desired_state == objects.TASK_STATE_SHUTDOWN
    assert restart_delay(1) < restart_delay(2) < restart_delay(3)
    assert restart_delay(100) == 300.0


def test_global_runs_one_task_per_eligible_node(tmp_path: pathlib.Path) -> None:
    store, orch = _store(tmp_path)

    def seed(tx: WriteTx) -> None:
        tx.create(_node("n1", "a"))
        tx.create(_node("n2", "a"))
        tx.create(_node("n3", "b"))
        tx.create(_service(mode=objects.ServiceSpec.MODE_GLOBAL,
                           constraints=("node.labels.zone == a",)))

    store.update_now(seed)
    _reconcile(store, orch)
    assert sorted(t.node_id for t in _live(store)) == ["n1", "n2"]

    _set_node(store, "n2", availability=objects.NodeSpec.AVAILABILITY_DRAIN)
    _reconcile(store, orch)
    assert [t.node_id for t in _live(store)] == ["n1"]


def test_a_global_task_stays_on_a_node_whose_engine_does_not_answer(
    tmp_path: pathlib.Path,
) -> None:
    store, orch = _store(tmp_path)

    def seed(tx: WriteTx) -> None:
        tx.create(_node("n1", "a"))
        tx.create(_service(mode=objects.ServiceSpec.MODE_GLOBAL))

    store.update_now(seed)
    _reconcile(store, orch)
    [kept] = _live(store)

    def engine(tx: WriteTx, node_id: str, unresponsive: bool) -> None:
        node = tx.get_node(node_id)
        assert node is not None
        node.status.engine_unresponsive = unresponsive
        tx.update(node)

    store.update_now(lambda tx: engine(tx, "n1", True))
    # A new node whose engine does not answer gets no task; n1 keeps its own.
    store.update_now(lambda tx: tx.create(_node("n2", "a")))
    store.update_now(lambda tx: engine(tx, "n2", True))
    _reconcile(store, orch)
    assert [t.id for t in _live(store)] == [kept.id]
    store.update_now(lambda tx: engine(tx, "n2", False))
    _reconcile(store, orch)
    assert sorted(t.node_id for t in _live(store)) == ["n1", "n2"]


def test_removing_the_service_removes_its_tasks(tmp_path: pathlib.Path) -> None:
    store, orch = _store(tmp_path)
    store.update_now(lambda tx: tx.create(_service(replicas=2)))
    _reconcile(store, orch)
    store.update_now(lambda tx: tx.delete(tx.get_service("s1")))  # type: ignore[arg-type]
    _reconcile(store, orch)
    assert {t.desired_state for t in store.view().tasks_of_service("s1")} == {
        objects.TASK_STATE_REMOVED
    }


def test_a_task_that_ran_a_while_restarts_the_delay_count(tmp_path: pathlib.Path) -> None:
    store, orch = _store(tmp_path)
    store.update_now(lambda tx: tx.create(_service(replicas=1)))
    _reconcile(store, orch)
    [task] = _live(store)

    def exit_after_a_long_run(tx: WriteTx) -> None:
        t = tx.get_task(task.id)
        assert t is not None
        t.attempt = 7
        t.status.state = objects.TASK_STATE_FAILED
        t.status.timestamp.FromSeconds(int(time.time() + 600))
        tx.update(t)

    store.update_now(exit_after_a_long_run)
    _reconcile(store, orch)
    [replacement] = _live(store)
    assert replacement.attempt == 1


def _set_node(store: SqliteStore, node_id: str, **changes: int) -> None:
    def apply(tx: WriteTx) -> None:
        node = tx.get_node(node_id)
        assert node is not None
        if "state" in changes:
            node.status.state = changes["state"]  # type: ignore[assignment]
        if "availability" in changes:
            node.spec.availability = changes["availability"]  # type: ignore[assignment]
        tx.update(node)

    store.update_now(apply)


def _place_all(store: SqliteStore, node_id: str, *, running: bool = True) -> None:
    def apply(tx: WriteTx) -> None:
        for task in tx.tasks_of_service("s1"):
            if task.desired_state <= RUNNING and not task.node_id:
                task.node_id = node_id
                task.status.state = RUNNING if running else objects.TASK_STATE_ASSIGNED
                tx.update(task)

    store.update_now(apply)


def test_tasks_of_a_down_node_are_replaced_at_once(tmp_path: pathlib.Path) -> None:
    store, orch = _store(tmp_path)
    store.update_now(lambda tx: (tx.create(_node("n1", "a")), tx.create(_node("n2", "a")),
                                 tx.create(_service(replicas=2))))
    _reconcile(store, orch)
    _place_all(store, "n1")
    _set_node(store, "n1", state=objects.NodeStatus.STATE_DOWN)
    _reconcile(store, orch)
    replacements = _live(store)
    assert [t.slot for t in replacements] == [1, 2]
    assert all(not t.node_id and not t.HasField("not_before") for t in replacements)
    orphans = [t for t in store.view().tasks_of_service("s1") if t.node_id == "n1"]
    assert {t.status.state for t in orphans} == {objects.TASK_STATE_ORPHANED}
    assert {t.desired_state for t in orphans} == {objects.TASK_STATE_REMOVED}


def test_drain_starts_replacements_before_stopping_the_old_tasks(tmp_path: pathlib.Path) -> None:
    store, orch = _store(tmp_path)
    store.update_now(lambda tx: (tx.create(_node("n1", "a")), tx.create(_node("n2", "a")),
                                 tx.create(_service(replicas=2))))
    _reconcile(store, orch)
    _place_all(store, "n1")
    old_ids = {t.id for t in _live(store)}
    _set_node(store, "n1", availability=objects.NodeSpec.AVAILABILITY_DRAIN)
    _reconcile(store, orch)
    # Old and new both live: the old keep running until their replacements run.
    assert len(_live(store)) == 4
    _reconcile(store, orch)
    assert len(_live(store)) == 4
    _place_all(store, "n2", running=False)
    _reconcile(store, orch)
    assert {t.id for t in _live(store)} >= old_ids
    _place_all(store, "n2")

    def start(tx: WriteTx) -> None:
        for task in tx.tasks_of_service("s1"):
            if task.node_id == "n2":
                task.status.state = RUNNING  # type: ignore[assignment]
                tx.update(task)

    store.update_now(start)
    _reconcile(store, orch)
    # Running is not enough: the old tasks give way once their replacements are ready.
    assert len(_live(store)) == 4

    def ready(tx: WriteTx) -> None:
        for task in tx.tasks_of_service("s1"):
            if task.node_id == "n2":
                task.status.ready = True
                tx.update(task)

    store.update_now(ready)
    _reconcile(store, orch)
    assert {t.node_id for t in _live(store)} == {"n2"}
    assert len(_live(store)) == 2
