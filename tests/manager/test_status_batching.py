"""The dispatcher writes the status reports of many sessions together (group commit): fewer
transactions, every report applied, a faulty one not taking the others with it."""

from __future__ import annotations

import asyncio
import logging
import pathlib
from typing import Any

import pytest

from podium.manager import dispatcher as dispatcher_module
from podium.manager.dispatcher import Dispatcher
from podium.manager.loadbook import LoadBook
from podium.manager.store import SqliteStore, WriteTx
from podium.v1 import dispatcher, objects

RUNNING = objects.TASK_STATE_RUNNING
NODES = 50


def _store(tmp_path: pathlib.Path) -> SqliteStore:
    store = SqliteStore(tmp_path / "store.db")

    def fill(tx: WriteTx) -> None:
        for n in range(NODES):
            tx.create(objects.Node(id=f"n{n}", description=objects.NodeDescription(name=f"h{n}")))
            for k in range(2):
                task = objects.Task(id=f"t{n}-{k}", node_id=f"n{n}", service_id="s", slot=k)
                task.status.state = objects.TASK_STATE_ASSIGNED
                tx.create(task)

    store.update_now(fill)
    return store


def _report(n: int) -> list[dispatcher.StatusReport.Update]:
    updates = []
    for k in range(2):
        update = dispatcher.StatusReport.Update(task_id=f"t{n}-{k}")
        update.status.state = RUNNING
        updates.append(update)
    return updates


class Counting:
    """The store, counting its write transactions."""

    def __init__(self, store: SqliteStore) -> None:
        self.store, self.transactions = store, 0

    async def update(self, fn: Any) -> Any:
        self.transactions += 1
        return await self.store.update(fn)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


async def test_reports_of_many_sessions_at_once_go_in_a_few_transactions(
        tmp_path: pathlib.Path) -> None:
    store = Counting(_store(tmp_path))
    d = Dispatcher(store=store, load=LoadBook())  # type: ignore[arg-type]
    await asyncio.gather(*(d._apply_statuses(f"n{n}", _report(n)) for n in range(NODES)))
    view = store.store.view()
    assert all(view.get_task(f"t{n}-{k}").status.state == RUNNING  # type: ignore[union-attr]
               for n in range(NODES) for k in range(2))
    assert store.transactions <= 2  # 50 reports, one loop turn
    store.store.close()


async def test_a_report_that_cannot_be_applied_is_logged_and_the_rest_are_written(
        tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    real = dispatcher_module._apply_status

    def broken_for_n7(tx: WriteTx, node_id: str, updates: Any) -> None:
        if node_id == "n7":
            raise RuntimeError("store fault")
        real(tx, node_id, updates)

    monkeypatch.setattr(dispatcher_module, "_apply_status", broken_for_n7)
    caplog.set_level(logging.INFO)
    store = _store(tmp_path)
    d = Dispatcher(store=store, load=LoadBook())
    results = await asyncio.gather(*(d._apply_statuses(f"n{n}", _report(n))
                                     for n in range(NODES)), return_exceptions=True)
    assert not [r for r in results if isinstance(r, Exception)]  # each task's fault is logged
    view = store.view()
    assert [f"n{n}" for n in range(NODES) for k in range(2)
            if view.get_task(f"t{n}-{k}").status.state != RUNNING] == ["n7", "n7"]  # type: ignore[union-attr]
    faults = [r.getMessage() for r in caplog.records if r.exc_info]
    assert any("t7-0; skipped" in m for m in faults) and any("t7-1; skipped" in m for m in faults)
    store.close()


class Stuck:
    """A store whose writes never finish."""

    def __init__(self) -> None:
        self.writing = asyncio.Event()

    async def update(self, fn: Any) -> Any:
        self.writing.set()
        await asyncio.Event().wait()


async def test_a_writer_cancelled_mid_write_leaves_no_session_waiting() -> None:
    store = Stuck()
    d = Dispatcher(store=store, load=LoadBook())  # type: ignore[arg-type]
    sessions = [asyncio.ensure_future(d._apply_statuses(f"n{n}", _report(n))) for n in range(3)]
    await asyncio.wait_for(store.writing.wait(), 5)
    later = asyncio.ensure_future(d._apply_statuses("n9", _report(9)))  # queued behind it
    await asyncio.sleep(0)
    assert d._reporter is not None
    d._reporter.cancel()
    done, _ = await asyncio.wait([*sessions, later], timeout=5)
    assert len(done) == 4 and all(s.cancelled() for s in done)
