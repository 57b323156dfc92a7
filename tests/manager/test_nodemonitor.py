"""Failure detection decisions, without an event loop."""

from __future__ import annotations

from podium.manager.nodemonitor import DOWN, READY, SUSPECT, NodeMonitor


def monitor(now: float = 0.0) -> NodeMonitor:
    return NodeMonitor(period=1.0, missed=3, down_grace=1.0, startup_grace=10.0, now=now)


def run(m: NodeMonitor, start: float, end: float, step: float = 0.25,
        nodes: tuple[tuple[str, int], ...] = ()) -> list[tuple[float, str, int]]:
    seen, t = [], start
    while t <= end + 1e-9:
        transitions, _ = m.tick(t, lambda: nodes)
        seen += [(t, x.node_id, x.state) for x in transitions]
        t += step
    return seen


def test_a_broken_session_is_suspect_then_down_after_the_grace() -> None:
    m = monitor()
    assert m.opened("n1", 0.0).state == READY
    assert m.closed("n1", 0.5).state == SUSPECT
    assert run(m, 0.25, 2.0) == [(1.5, "n1", DOWN)]


def test_a_reconnect_within_the_grace_keeps_the_node() -> None:
    m = monitor()
    m.opened("n1", 0.0)
    m.closed("n1", 0.5)
    m.opened("n1", 1.0)
    for t in (1.25, 1.5, 2.0, 2.5):
        m.heard("n1", t)
    assert run(m, 0.25, 2.5) == []


def test_silence_is_down_after_missed_heartbeats_and_closes_the_session() -> None:
    m = monitor()
    m.opened("n1", 0.0)
    m.heard("n1", 1.0)
    assert run(m, 0.25, 4.0) == []
    transitions, silent = m.tick(4.25, tuple)
    assert [(t.node_id, t.state) for t in transitions] == [("n1", DOWN)]
    assert silent == ["n1"]


def test_a_stalled_manager_blames_no_node() -> None:
    m = monitor()
    m.opened("n1", 0.0)
    m.tick(1.0, tuple)
    # The manager's loop hung for 5 s: the node's heartbeats waited unread.
    transitions, silent = m.tick(6.0, tuple)
    assert transitions == [] and silent == []


def test_nodes_get_a_grace_after_the_manager_starts() -> None:
    m = monitor()
    known = (("n1", READY), ("n2", READY))
    assert run(m, 0.25, 9.75, nodes=known) == []
    m.opened("n1", 5.0)
    for t in range(6, 11):
        m.heard("n1", float(t))
    assert run(m, 10.0, 10.0, nodes=known) == [(10.0, "n2", DOWN)]
