"""The dashboard's pure parts: login tokens and sessions on a fake clock, and the rows and load
series its pages show, from a store view and a LoadBook fed by hand."""

from __future__ import annotations

import pathlib

import pytest

from podium.manager.dashboard import _views
from podium.manager.dashboard._sessions import Grant, SessionBook, digest
from podium.manager.loadbook import HISTORY, LoadBook
from podium.manager.store import SqliteStore, WriteTx
from podium.v1 import dispatcher, objects

ALICE = Grant("user/alice", "alice", "a1")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_token_opens_one_session_within_its_time() -> None:
    clock = Clock()
    book = SessionBook(token_ttl=60, session_ttl=3600, clock=clock)
    token, expires = book.issue(ALICE)
    assert expires == 1060
    opened = book.redeem(token)
    assert opened is not None
    session_id, session = opened
    assert session.grant == ALICE and session.key == digest(session_id)
    assert book.redeem(token) is None  # once only
    assert book.get(session_id) == session
    clock.now += 3601
    assert book.get(session_id) is None  # the session's life is over
    late, _ = book.issue(ALICE)
    clock.now += 61
    assert book.redeem(late) is None  # the token's is
    assert book.redeem("made-up") is None
    assert book.counts() == (0, 0)


def test_the_book_keeps_digests_only_and_a_bounded_number() -> None:
    book = SessionBook(max_tokens=3, max_sessions=2, clock=Clock())
    tokens = [book.issue(ALICE)[0] for _ in range(5)]
    assert book.counts() == (3, 0)
    assert book.redeem(tokens[0]) is None  # the oldest went first
    ids = [book.redeem(t) for t in tokens[2:]]
    assert all(ids) and book.counts() == (0, 2)
    assert not any(t in repr(book.__dict__) for t in tokens)
    assert not any(i is not None and i[0] in repr(book.__dict__) for i in ids)
    first = ids[0]
    assert first is not None and book.get(first[0]) is None


def test_ending_an_identity_keeps_the_sessions_of_certificates_it_still_holds() -> None:
    book = SessionBook(clock=Clock())
    old = book.redeem(book.issue(ALICE)[0])
    new = book.redeem(book.issue(Grant("user/alice", "alice", "a2"))[0])
    bob = book.redeem(book.issue(Grant("user/bob", "bob", "b1"))[0])
    pending, _ = book.issue(ALICE)
    assert old and new and bob
    assert book.end_identity("user/alice", frozenset({"a2"})) == [old[1].key]
    assert book.get(old[0]) is None and book.get(new[0]) is not None
    assert book.redeem(pending) is None  # its token went with it
    assert book.end_identity("user/alice") == [new[1].key]  # the user is gone
    assert book.alive(bob[1].key)
    book.end(bob[1].key)
    book.end(bob[1].key)
    assert not book.alive(bob[1].key)


# -- views -----------------------------------------------------------------------------------

@pytest.fixture
async def store(tmp_path: pathlib.Path) -> SqliteStore:
    store = SqliteStore(tmp_path / "state.db")

    def seed(tx: WriteTx) -> None:
        node = objects.Node(id="n1")
        node.description.name = "node-a"
        node.status.state = objects.NodeStatus.STATE_READY
        tx.create(node)
        for name in ("web", "db"):
            service = objects.Service(id=f"s-{name}")
            service.spec.name = name
            service.spec.replicas = 2
            tx.create(service)
            for slot in (1, 2):
                task = objects.Task(id=f"t-{name}-{slot}", service_id=service.id,
                                    service_name=name, slot=slot, node_id="n1",
                                    desired_state=objects.TASK_STATE_RUNNING)
                task.status.state = objects.TASK_STATE_RUNNING
                tx.create(task)

    await store.update(seed)
    return store


def _report(at: float, tasks: dict[str, tuple[float, int]], *,
            summary: bool = False) -> dispatcher.LoadReport:
    report = dispatcher.LoadReport(summary=summary)
    report.time.FromNanoseconds(int(at * 1e9))
    report.node.cpu_cores_total = 2.0
    report.node.memory_total_bytes = 1 << 30
    for task_id, (cpu, memory) in tasks.items():
        report.tasks.add(task_id=task_id, cpu_cores=cpu, memory_bytes=memory)
    return report


async def test_load_series_sum_each_services_tasks_holding_each_last_figure(
        store: SqliteStore) -> None:
    book = LoadBook()
    book.record("n1", _report(100.2, {"t-web-1": (0.5, 100), "t-web-2": (0.25, 50),
                                      "t-db-1": (1.0, 1000)}, summary=True))
    # Only web.1 changed: web.2 and db.1 keep their figures.
    book.record("n1", _report(101.1, {"t-web-1": (0.75, 120)}))
    book.record("n1", _report(102.3, {"t-web-2": (0.0, 60)}))
    series = {s["name"]: s for s in _views.load_series(store.view(),
                                                        book.snapshot(history=HISTORY))}
    assert sorted(series) == ["db", "web"]
    assert series["web"]["points"] == [[100, 0.75, 150], [101, 1.0, 170], [102, 0.75, 180]]
    assert series["db"]["points"] == [[100, 1.0, 1000]]
    rows = _views.services(store.view(), lambda service: None)
    assert [(r["name"], r["running"], r["desired"]) for r in rows] == [("db", 2, 2),
                                                                       ("web", 2, 2)]
    nodes = _views.nodes(store.view(), book.snapshot(), lambda node_id: 0.5)
    assert [(n["name"], n["tasks"], n["cpu_total"], n["reported_ago"]) for n in nodes] == [
        ("node-a", 4, 2.0, 0.5)]
    store.close()

