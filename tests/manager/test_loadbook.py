"""The LoadBook: latest figures and a bounded history per node and task, summaries that replace
a node's task set, and a node forgotten with its tasks."""

from __future__ import annotations

from podium.manager.loadbook import HISTORY, LoadBook
from podium.v1 import dispatcher


def _report(at: float, tasks: dict[str, float], *, summary: bool = True) -> dispatcher.LoadReport:
    report = dispatcher.LoadReport(summary=summary)
    report.time.FromNanoseconds(int(at * 1e9))
    report.node.cpu_cores_used = sum(tasks.values())
    report.node.memory_used_bytes = 100
    report.node.memory_total_bytes = 1000
    for task_id, cpu in tasks.items():
        report.tasks.add(task_id=task_id, cpu_cores=cpu, memory_bytes=int(cpu * 1000),
                         memory_share=cpu / 10)
    return report


def _history(book: LoadBook, task_id: str, last: int) -> list[tuple[float, float, int]]:
    snapshot = book.snapshot(history=last)
    item = next(t for t in snapshot.tasks if t.task_id == task_id)
    return [(s.time.ToNanoseconds() / 1e9, s.cpu_cores, s.memory_bytes) for s in item.history]


def test_history_keeps_the_newest_samples_oldest_first() -> None:
    book = LoadBook()
    for i in range(HISTORY + 5):
        book.record("n1", _report(1000.0 + i, {"t1": float(i)}))
    full = _history(book, "t1", HISTORY)
    assert len(full) == HISTORY
    assert full[0] == (1005.0, 5.0, 5000)
    assert full[-1] == (1000.0 + HISTORY + 4, float(HISTORY + 4), (HISTORY + 4) * 1000)
    assert _history(book, "t1", 3) == full[-3:]
    node = book.snapshot(history=2).nodes[0]
    assert [s.cpu_cores for s in node.history] == [float(HISTORY + 3), float(HISTORY + 4)]
    assert book.task_load("t1") is not None and book.task_load("t1").cpu_cores == HISTORY + 4


def test_a_summary_replaces_its_nodes_tasks_and_no_other_nodes() -> None:
    book = LoadBook()
    book.record("n1", _report(1.0, {"a": 1.0, "b": 1.0}))
    book.record("n2", _report(1.0, {"c": 1.0}))
    book.record("n1", _report(2.0, {"b": 2.0}, summary=False))  # partial: "a" keeps its figures
    assert book.task_load("a") is not None
    book.record("n1", _report(3.0, {"b": 3.0}))  # summary: "a" is gone from n1
    assert book.task_load("a") is None
    assert book.task_load("c") is not None
    assert {t.task_id for t in book.snapshot().tasks} == {"b", "c"}


def test_a_task_on_a_new_node_starts_its_history_again_and_forgetting_a_node_drops_its_tasks(
) -> None:
    book = LoadBook()
    book.record("n1", _report(1.0, {"a": 1.0}))
    book.record("n1", _report(2.0, {"a": 2.0}))
    book.record("n2", _report(3.0, {"a": 5.0}))
    assert [cpu for _, cpu, _ in _history(book, "a", HISTORY)] == [5.0]
    # n1's summary no longer lists "a", which now belongs to n2: it stays.
    book.record("n1", _report(4.0, {}))
    assert book.task_load("a") is not None
    book.forget_node("n2")
    assert book.task_load("a") is None
    assert [n.node_id for n in book.snapshot().nodes] == ["n1"]
