"""The store's contract, on both backends (SQLite; etcd, marked `etcd`): atomic transactions,
version checks, watch, and durability."""

from __future__ import annotations

import asyncio
import itertools
import pathlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from podium.lab.etcd import EtcdCluster
from podium.manager.store import (
    ConflictError,
    EtcdStore,
    ExistsError,
    SqliteStore,
    WriteTx,
    acting_as,
    parse_url,
)
from podium.v1 import objects

Store = SqliteStore | EtcdStore
Opener = Callable[[], Awaitable[Store]]
_prefixes = itertools.count()


def _service(id: str, name: str, replicas: int = 1) -> objects.Service:
    svc = objects.Service(id=id)
    svc.spec.name = name
    svc.spec.replicas = replicas
    svc.spec.container.image = "podium/web:latest"
    svc.spec.container.env["A"] = "1"
    return svc


def _task(id: str, service_id: str, node_id: str = "") -> objects.Task:
    return objects.Task(id=id, service_id=service_id, node_id=node_id, slot=1)


def _set_replicas(store: SqliteStore, service_id: str, replicas: int) -> None:
    def rescale(tx: WriteTx) -> None:
        svc = tx.get_service(service_id)
        assert svc is not None
        svc.spec.replicas = replicas
        tx.update(svc)
    store.update_now(rescale)


@pytest.fixture(params=["sqlite", pytest.param("etcd", marks=pytest.mark.etcd)])
async def open_store(request: pytest.FixtureRequest,
                     tmp_path: pathlib.Path) -> AsyncIterator[Opener]:
    """Opens a store on this test's state (the same each time: a reopen reads what was written);
    every store opened is closed at the end."""
    opened: list[Store] = []
    if request.param == "sqlite":
        async def opener() -> Store:
            opened.append(SqliteStore(tmp_path / "state.db"))
            return opened[-1]
    else:
        etcd: EtcdCluster = request.getfixturevalue("etcd1")
        target = parse_url(f"{etcd.url}/test/{next(_prefixes)}")

        async def opener() -> Store:
            opened.append(await EtcdStore.open(target))
            return opened[-1]
    yield opener
    for store in opened:
        if isinstance(store, EtcdStore):
            await store.aclose()
        else:
            store.close()


async def test_create_update_delete_and_indexes(open_store: Opener) -> None:
    store = await open_store()

    def seed(tx: WriteTx) -> None:
        tx.create(_service("s1", "web"))
        tx.create(_task("t1", "s1", "n1"))
        tx.create(_task("t2", "s1"))

    await store.update(seed)
    view = store.view()
    assert view.service_by_name("web") is not None
    assert {t.id for t in view.tasks_of_service("s1")} == {"t1", "t2"}
    assert [t.id for t in view.tasks_of_node("n1")] == ["t1"]

    def move(tx: WriteTx) -> None:
        task = tx.get_task("t2")
        assert task is not None and task.meta.version == 1
        task.node_id = "n1"
        tx.update(task)

    await store.update(move)
    assert {t.id for t in store.view().tasks_of_node("n1")} == {"t1", "t2"}
    task = store.view().get_task("t2")
    assert task is not None and task.meta.version == 2
    assert task.meta.updated.ToNanoseconds() >= task.meta.created.ToNanoseconds()

    await store.update(lambda tx: tx.delete(tx.get_task("t1")))  # type: ignore[arg-type]
    assert [t.id for t in store.view().tasks_of_node("n1")] == ["t2"]


async def test_a_transaction_lists_its_own_staged_tasks_by_service_and_node(
        open_store: Opener) -> None:
    store = await open_store()
    await store.update(lambda tx: (tx.create(_service("s1", "web")),
                                   tx.create(_service("s2", "db")),
                                   tx.create(_task("t1", "s1", "n1"))))

    def stage(tx: WriteTx) -> None:
        tx.create(_task("t2", "s1"))
        tx.create(_task("t3", "s2", "n1"))
        moved = tx.get_task("t1")
        assert moved is not None
        moved.node_id = "n2"
        tx.update(moved)
        # Staged writes are seen, each task under its own service and its node as staged.
        assert [t.id for t in tx.peek_tasks_of_service("s1")] == ["t1", "t2"]
        assert [t.id for t in tx.peek_tasks_of_service("s2")] == ["t3"]
        assert [t.id for t in tx.peek_tasks_of_node("n1")] == ["t3"]
        assert [t.id for t in tx.tasks_of_node("n2")] == ["t1"]
        # tasks_of_* give copies to change; peek_* the staged objects themselves.
        copy = tx.tasks_of_service("s2")[0]
        copy.node_id = "elsewhere"
        assert tx.peek_tasks_of_service("s2")[0].node_id == "n1"
        node = tx.peek_node("missing")
        assert node is None

    await store.update(stage)
    assert [t.id for t in store.view().tasks_of_node("n2")] == ["t1"]


async def test_stale_version_conflicts_and_rolls_back_everything(open_store: Opener) -> None:
    store = await open_store()
    await store.update(lambda tx: tx.create(_service("s1", "web")))
    stale = store.view().get_service("s1")
    assert stale is not None
    stale_copy = objects.Service()
    stale_copy.CopyFrom(stale)

    def bump(tx: WriteTx) -> None:
        svc = tx.get_service("s1")
        assert svc is not None
        svc.spec.replicas = 5
        tx.update(svc)

    await store.update(bump)

    def conflicting(tx: WriteTx) -> None:
        tx.create(_task("t9", "s1"))
        stale_copy.spec.replicas = 2
        tx.update(stale_copy)

    with pytest.raises(ConflictError):
        await store.update(conflicting)
    assert store.view().get_task("t9") is None
    svc = store.view().get_service("s1")
    assert svc is not None and svc.spec.replicas == 5

    with pytest.raises(ExistsError):
        await store.update(lambda tx: tx.create(_service("s2", "web")))


async def test_state_survives_reopen(open_store: Opener) -> None:
    store = await open_store()
    svc = _service("s1", "web", replicas=3)
    svc.spec.ports.add(target_port=80, published_port=8080)
    await store.update(lambda tx: tx.create(svc))
    await store.update(lambda tx: tx.create(_task("t1", "s1", "n1")))
    if isinstance(store, EtcdStore):
        await store.aclose()
    else:
        store.close()

    reopened = await open_store()
    got = reopened.view().service_by_name("web")
    assert got is not None
    assert got.spec.replicas == 3 and got.spec.ports[0].published_port == 8080
    assert got.spec.container.env["A"] == "1" and got.meta.version == 1
    assert [t.id for t in reopened.view().tasks_of_node("n1")] == ["t1"]


async def test_watch_sees_commits_in_order(open_store: Opener) -> None:
    store = await open_store()
    watch = store.watch()
    await store.update(lambda tx: tx.create(_service("s1", "web")))

    def two(tx: WriteTx) -> None:
        tx.create(_task("t1", "s1"))
        tx.create(_task("t2", "s1"))

    await store.update(two)
    got = [await asyncio.wait_for(watch.get(), 1) for _ in range(3)]
    assert [(c.action, c.kind, c.obj.id) for c in got] == [
        ("create", "service", "s1"),
        ("create", "task", "t1"),
        ("create", "task", "t2"),
    ]
    watch.close()
    await store.update(lambda tx: tx.create(_task("t3", "s1")))
    assert watch.get_nowait() is None


async def test_changes_carry_their_actor(open_store: Opener) -> None:
    store = await open_store()
    watch = store.watch()
    with acting_as("user:alice"):
        await store.update(lambda tx: tx.create(_service("s1", "web")))
    with acting_as("node:n1"):
        await store.update(lambda tx: tx.create(_task("t1", "s1")))
    with acting_as("user:bob"):
        await store.update(lambda tx: tx.delete(tx.get_task("t1")))  # type: ignore[arg-type]
    got = [await asyncio.wait_for(watch.get(), 1) for _ in range(3)]
    assert [(c.action, c.obj.id, c.actor) for c in got] == [
        ("create", "s1", "user:alice"), ("create", "t1", "node:n1"), ("delete", "t1", "user:bob")]
    svc = store.view().get_service("s1")
    assert svc is not None and svc.meta.changed_by == "user:alice"


def test_rows_of_an_earlier_version_load_and_are_rewritten_when_changed(
        tmp_path: pathlib.Path) -> None:
    """Earlier versions stored msgpack maps keyed by field name: such a store still opens with
    every field, and an object written again is stored in the current (protobuf) form."""
    import sqlite3

    import msgpack

    from podium.manager.store import _codec

    store = SqliteStore(tmp_path / "state.db")
    store.update_now(lambda tx: tx.create(_service("s1", "web", replicas=3)))
    store.close()
    svc = _service("s1", "web", replicas=3)
    svc.meta.version = 1
    old_row = msgpack.packb(_codec.to_plain(svc), use_bin_type=True)
    assert old_row[:1] != _codec.ROW_MARK
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute("UPDATE objects SET data = ? WHERE id = 's1'", (old_row,))
    db.close()

    store = SqliteStore(tmp_path / "state.db")
    got = store.view().get_service("s1")
    assert got is not None and got.spec.replicas == 3 and got.spec.container.env["A"] == "1"

    _set_replicas(store, "s1", 5)
    store.close()
    with sqlite3.connect(tmp_path / "state.db") as db:
        (row,) = db.execute("SELECT data FROM objects WHERE id = 's1'").fetchone()
    db.close()
    assert row[:1] == _codec.ROW_MARK
    assert objects.Service.FromString(row[1:]).spec.replicas == 5


async def test_pending_tasks_are_listed_from_the_index_and_the_staged_writes(
        open_store: Opener) -> None:
    store = await open_store()
    waiting = _task("t1", "s1")
    waiting.desired_state = objects.TASK_STATE_RUNNING
    waiting.status.state = objects.TASK_STATE_PENDING
    placed = _task("t2", "s1", "n1")
    placed.desired_state = objects.TASK_STATE_RUNNING
    placed.status.state = objects.TASK_STATE_ASSIGNED
    await store.update(lambda tx: (tx.create(waiting), tx.create(placed)))
    assert [t.id for t in store.view().pending_tasks()] == ["t1"]

    def place_and_add(tx: WriteTx) -> list[str]:
        task = tx.get_task("t1")
        assert task is not None
        task.status.state = objects.TASK_STATE_ASSIGNED
        tx.update(task)
        more = _task("t3", "s1")
        more.desired_state = objects.TASK_STATE_RUNNING
        more.status.state = objects.TASK_STATE_PENDING
        tx.create(more)
        return [t.id for t in tx.pending_tasks()]
    assert await store.update(place_and_add) == ["t3"]
    assert [t.id for t in store.view().pending_tasks()] == ["t3"]
    await store.update(lambda tx: tx.delete(tx.get_task("t3")))  # type: ignore[arg-type]
    assert store.view().pending_tasks() == []


def test_a_store_in_the_earlier_row_layout_opens_whole_and_is_laid_out_anew(
        tmp_path: pathlib.Path) -> None:
    """Earlier stores kept their rows ordered by (kind, id) (WITHOUT ROWID): such a file opens
    with every object, is rewritten in the current layout once, and takes writes after."""
    import sqlite3

    from podium.manager.store import _codec

    path = tmp_path / "state.db"
    svc, task = _service("s1", "web", replicas=3), _task("t1", "s1", "n1")
    svc.meta.version = task.meta.version = 1
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE objects (kind TEXT NOT NULL, id TEXT NOT NULL, "
                   "version INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (kind, id)) "
                   "WITHOUT ROWID")
        db.executemany("INSERT INTO objects VALUES (?,?,?,?)",
                       [("service", "s1", 1, _codec.encode(svc)),
                        ("task", "t1", 1, _codec.encode(task))])
    db.close()

    store = SqliteStore(path)
    got = store.view().get_service("s1")
    assert got is not None and got.spec.replicas == 3
    assert store.view().get_task("t1") is not None

    _set_replicas(store, "s1", 5)
    store.close()
    with sqlite3.connect(path) as db:
        (sql,) = db.execute("SELECT sql FROM sqlite_master WHERE name = 'objects'").fetchone()
        rows = db.execute("SELECT kind, id, version FROM objects ORDER BY kind").fetchall()
    db.close()
    assert "WITHOUT ROWID" not in sql.upper()
    assert rows == [("service", "s1", 2), ("task", "t1", 1)]
    store = SqliteStore(path)  # opened again: nothing left to rewrite
    got = store.view().get_service("s1")
    assert got is not None and got.spec.replicas == 5
    store.close()


def test_updating_tasks_created_together_writes_the_pages_they_share(
        tmp_path: pathlib.Path) -> None:
    """The status reports of a burst's tasks rewrite the few pages those tasks were written
    to together, not a page per task scattered over the whole store (rows ordered by their
    random ids): the write-ahead log shows how many pages a commit wrote."""
    import secrets

    store = SqliteStore(tmp_path / "state.db")
    spec = _service("s0", "web").spec

    def create(count: int) -> list[str]:
        made = [secrets.token_hex(10) for _ in range(count)]

        def apply(tx: WriteTx) -> None:
            for task_id in made:
                task = _task(task_id, "s0", "n1")
                task.spec.CopyFrom(spec)
                tx.create(task)
        store.update_now(apply)
        return made

    for _ in range(20):
        create(1000)  # the tasks already there, created earlier
    burst = create(2000)

    def report(tx: WriteTx) -> None:
        for task_id in burst:
            task = tx.get_task(task_id)
            assert task is not None
            task.status.state = objects.TASK_STATE_RUNNING
            tx.update(task)
    store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.update_now(report)
    wal = (tmp_path / "state.db-wal").stat().st_size
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store.close()
    written = wal // (4096 + 24)
    # 2,000 rows of ~200 bytes fill about 100 pages; ordered by id they were spread over
    # nearly every one of the store's pages.
    assert written < pages / 4, f"{written} pages written of {pages}"
