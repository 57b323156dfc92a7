"""Failure detection decisions, without an event loop: an agent that is gone is told apart from
a host that is gone, and only the latter's tasks are replaced at once."""

from __future__ import annotations

from collections.abc import Callable

from podium.manager.nodemonitor import AGENT_DOWN, DOWN, READY, SUSPECT, NodeMonitor


def monitor(now: float = 0.0, restart_grace: float = 30.0) -> NodeMonitor:
    return NodeMonitor(period=1.0, missed=3, down_grace=1.0, startup_grace=10.0,
                       restart_grace=restart_grace, tick=0.25, now=now)


def probes(m: NodeMonitor, start: float, end: float, step: float = 0.25) -> list[tuple[float, str]]:
    """Ticks from start to end: the probes asked for (when a node has no transition)."""
    asked, t = [], start
    while t <= end + 1e-9:
        decisions = m.tick(t, tuple)
        assert decisions.transitions == []
        asked += [(t, node_id) for node_id in decisions.probe]
        t += step
    return asked


def run(m: NodeMonitor, start: float, end: float, step: float = 0.25,
        nodes: tuple[tuple[str, int], ...] = (),
        heard: tuple[str, ...] = ()) -> list[tuple[float, str, int]]:
    """Ticks from start to end; the `heard` nodes send a message at every step."""
    seen, t = [], start
    while t <= end + 1e-9:
        for node_id in heard:
            m.heard(node_id, t)
        decisions = m.tick(t, lambda: nodes)
        seen += [(t, x.node_id, x.state) for x in decisions.transitions]
        t += step
    return seen


def states(decisions: object) -> list[tuple[str, int]]:
    return [(t.node_id, t.state) for t in decisions.transitions]  # type: ignore[attr-defined]


def test_an_agent_leaving_to_restart_is_held_not_down() -> None:
    m = monitor()
    m.opened("n1", 0.0)
    left = m.closed("n1", 0.5, restarting="agent stopped")
    assert states(left) == [("n1", AGENT_DOWN)] and left.probe == []
    assert left.transitions[0].held_until == 30.5
    assert "agent restarting" in left.transitions[0].reason
    # Back 20 s later: ready again, nothing ever went down.
    assert run(m, 0.25, 20.0) == []
    assert m.opened("n1", 20.5).state == READY
    assert run(m, 20.5, 60.0, heard=("n1",)) == []


def test_a_held_node_whose_agent_does_not_return_is_down_after_the_grace() -> None:
    m = monitor(restart_grace=5.0)
    m.opened("n1", 0.0)
    m.closed("n1", 1.0, restarting="agent stopped")
    assert run(m, 0.25, 7.0) == [(6.0, "n1", DOWN)]


def test_a_broken_session_on_a_host_that_answers_is_held() -> None:
    m = monitor(restart_grace=5.0)
    m.opened("n1", 0.0)
    broke = m.closed("n1", 0.5)
    assert states(broke) == [("n1", SUSPECT)] and broke.probe == ["n1"]
    answered = m.probed("n1", True, None, "10.0.0.3:22 refused", 0.52)
    assert states(answered) == [("n1", AGENT_DOWN)]
    assert answered.transitions[0].held_until == 5.52
    assert "host answers (10.0.0.3:22 refused)" in answered.transitions[0].reason
    # Not down after the down grace; down when the restart grace ends without the agent.
    assert run(m, 0.25, 6.0) == [(5.75, "n1", DOWN)]


def test_a_broken_session_on_a_host_that_answers_nothing_is_down_at_once() -> None:
    m = monitor()
    m.opened("n1", 0.0)
    m.closed("n1", 0.5)
    gone = m.probed("n1", False, None, "no answer", 1.0)
    assert states(gone) == [("n1", DOWN)]
    assert run(m, 1.0, 40.0) == []


def test_a_broken_session_on_a_live_host_whose_tasks_do_not_answer_is_down_at_once() -> None:
    # The agent died together with its engine: the kernel answers, the containers do not.
    m = monitor()
    m.opened("n1", 0.0)
    m.closed("n1", 0.5)
    dead = m.probed("n1", True, False, "10.0.0.3:22 refused, but no task port accepted", 1.0)
    assert states(dead) == [("n1", DOWN)]
    assert "its tasks not answering" in dead.transitions[0].reason


def test_a_silent_node_whose_host_answers_but_tasks_do_not_is_down() -> None:
    m = monitor()
    m.opened("n1", 0.0)
    assert probes(m, 0.25, 1.25) == [(1.25, "n1")]
    assert m.probed("n1", True, False, "refused", 1.5).transitions == []
    assert run(m, 1.5, 3.25) == [(3.25, "n1", DOWN)]


def test_a_broken_session_without_a_probe_answer_is_down_after_the_down_grace() -> None:
    m = monitor()
    m.opened("n1", 0.0)
    m.closed("n1", 0.5)
    assert run(m, 0.25, 2.0) == [(1.5, "n1", DOWN)]
    assert states(m.probed("n1", True, True, "late answer", 2.1)) == []  # stale: decided already


def test_a_late_heartbeat_asks_for_one_probe_and_no_answer_is_down_at_once() -> None:
    m = monitor()
    m.opened("n1", 0.0)
    # 1.2 periods without a message: one probe per silence.
    assert probes(m, 0.25, 1.5) == [(1.25, "n1")]
    gone = m.probed("n1", False, None, "no answer", 1.75)
    assert states(gone) == [("n1", DOWN)] and gone.close == ["n1"]
    assert "host not answering" in gone.transitions[0].reason
    assert run(m, 2.0, 10.0) == []  # decided once


def test_a_late_node_whose_host_answers_stays_ready_until_silent_then_is_held() -> None:
    m = monitor(restart_grace=10.0)
    m.opened("n1", 0.0)
    assert probes(m, 0.25, 1.25) == [(1.25, "n1")]
    assert m.probed("n1", True, True, "10.0.0.3:32768 accepted", 1.5).transitions == []
    assert run(m, 1.5, 3.0) == []
    silent = m.tick(3.25, tuple)  # 3 periods: a hung agent on a live host
    assert states(silent) == [("n1", AGENT_DOWN)] and silent.close == ["n1"]
    assert "agent hung" in silent.transitions[0].reason
    assert run(m, 3.5, 14.0) == [(13.25, "n1", DOWN)]


def test_a_node_heard_again_ignores_its_late_probe() -> None:
    m = monitor()
    m.opened("n1", 0.0)
    assert probes(m, 0.25, 1.25) == [(1.25, "n1")]
    m.heard("n1", 1.3)
    assert m.probed("n1", False, None, "no answer", 1.75).transitions == []
    assert run(m, 1.75, 3.0, heard=("n1",)) == []


def test_an_inconclusive_probe_is_asked_for_again() -> None:
    m = monitor()
    m.opened("n1", 0.0)
    m.closed("n1", 0.5)
    again = m.probed("n1", None, None, "manager stalled", 0.9)
    assert again.transitions == [] and again.probe == ["n1"]


def test_silence_without_any_probe_answer_is_down_and_closes_the_session() -> None:
    m = monitor()
    m.opened("n1", 0.0)
    m.heard("n1", 1.0)
    assert run(m, 0.25, 4.0) == []
    silent = m.tick(4.25, tuple)
    assert states(silent) == [("n1", DOWN)]
    assert silent.close == ["n1"]


def test_a_stalled_manager_blames_no_node() -> None:
    m = monitor(restart_grace=5.0)
    m.opened("n1", 0.0)
    m.opened("n2", 0.0)
    m.closed("n2", 0.5, restarting="agent stopped")
    assert run(m, 0.25, 1.0, heard=("n1",)) == []
    # The manager's loop hung for 5 s: the node's heartbeats waited unread, and the held node's
    # grace moves on by the stall too.
    stalled = m.tick(6.0, tuple)
    assert stalled.transitions == [] and stalled.close == [] and stalled.probe == []
    assert run(m, 6.25, 10.5, heard=("n1",)) == [(10.25, "n2", DOWN)]


def test_nodes_get_a_grace_after_the_manager_starts() -> None:
    m = monitor()
    known = (("n1", READY), ("n2", READY))
    assert run(m, 0.25, 9.75, nodes=known) == []
    m.opened("n1", 5.0)
    for t in range(6, 11):
        m.heard("n1", float(t))
    swept = m.tick(10.0, lambda: known)
    # Still without a session: probed as a session that broke, not down at once.
    assert states(swept) == [("n2", SUSPECT)] and swept.probe == ["n2"]
    assert states(m.probed("n2", False, None, "timed out", 10.5)) == [("n2", DOWN)]


def test_nodes_still_reconnecting_when_the_grace_ends_get_more_time_within_bounds() -> None:
    """A reconnect storm outlasts the startup grace: while sessions keep opening, the nodes not
    back yet are waited for (they are in the queue), at most a restart grace more."""
    known = (("n1", READY), ("n2", READY))

    def storm(m: NodeMonitor, until: float, opens: Callable[[float], str | None]
              ) -> list[tuple[float, str, int]]:
        """Ticks to `until`; `opens(t)` names the node whose session opens at t, if any; every
        open session is heard at every tick."""
        seen: list[tuple[float, str, int]] = []
        open_ones: list[str] = []
        t = 0.25
        while t <= until + 1e-9:
            if (name := opens(t)) is not None:
                m.opened(name, t)
                open_ones.append(name)
            for node_id in open_ones:
                m.heard(node_id, t)
            seen += [(t, x.node_id, x.state) for x in m.tick(t, lambda: known).transitions]
            t += 0.25
        return seen

    # n1 back at 5 s; other agents of the storm every half second from 9 s to 11.5 s: the
    # nodes still missing are looked at once none opened for three periods (3 s here).
    m = monitor(restart_grace=30.0)
    assert storm(m, 15.0, lambda t: "n1" if t == 5.0 else f"other-{t}"
                 if 9.0 <= t <= 11.5 and t % 0.5 == 0 else None) == [(14.5, "n2", SUSPECT)]
    # Sessions opening for ever do not hold it back beyond a restart grace after the grace.
    m = monitor(restart_grace=30.0)
    assert storm(m, 40.5, lambda t: f"other-{t}") == [(40.0, "n1", SUSPECT),
                                                        (40.0, "n2", SUSPECT)]


def test_sessions_still_arriving_hold_back_the_startup_sweep() -> None:
    """Under a storm the registrations can pause (each is written to the store) while calls
    keep coming in: those count as the storm going on."""
    known = (("n1", READY),)
    m = monitor()
    seen = []
    for step in range(1, 75):  # to 18.5 s; calls come in every half second until 15 s
        t = step * 0.25
        if t <= 15.0 and t % 0.5 == 0:
            m.arriving(t)
        seen += [(t, x.node_id, x.state) for x in m.tick(t, lambda: known).transitions]
    assert seen == [(18.0, "n1", SUSPECT)]


def test_a_pause_in_the_storm_shorter_than_a_sessions_silence_does_not_end_it() -> None:
    """With a 3 s period (a large cluster) a session is silent after 9 s: a 5 s pause in the
    arrivals (a simulator, or a whole rack's agents, held up) is not the storm's end, and the
    nodes of the agents still on their way are not swept before they arrive."""
    known = (("n1", READY), ("n2", READY))
    m = monitor()
    m.set_period(3.0, 0.0)
    seen, t, opened = [], 0.25, False
    while t <= 30.0:
        if 9.0 <= t <= 12.0 and t % 0.5 == 0:
            m.arriving(t)
        if t == 17.0:
            m.opened("n2", t)
            opened = True
        if opened:
            m.heard("n2", t)
        seen += [(t, x.node_id, x.state) for x in m.tick(t, lambda: known).transitions
                 if x.state == SUSPECT]
        t += 0.25
    assert seen == [(26.0, "n1", SUSPECT)]  # 9 s after the last arrival


def test_the_startup_sweep_waits_while_most_nodes_are_still_missing() -> None:
    """Most nodes without a session at once, after the manager restarted, is its own reconnect
    storm: the sweep waits until half of them are back (and none arrived for a while), or a
    restart grace more at most."""
    known = tuple((f"n{i}", READY) for i in range(1, 5))

    def sweep(back_at: float | None) -> list[tuple[float, str, int]]:
        m = monitor(restart_grace=30.0)
        m.expect(len(known))
        m.opened("n1", 5.0)
        seen = []
        for step in range(1, 181):  # to 45 s; n1 (and n2 once back) heard at every tick
            t = step * 0.25
            if back_at is not None and t == back_at:
                m.opened("n2", t)
            for node_id in ("n1", "n2") if back_at is not None and t >= back_at else ("n1",):
                m.heard(node_id, t)
            seen += [(t, x.node_id, x.state) for x in m.tick(t, lambda: known).transitions
                     if x.state == SUSPECT]
        return seen

    assert sweep(back_at=20.0) == [(23.0, "n3", SUSPECT), (23.0, "n4", SUSPECT)]
    assert sweep(back_at=None) == [(40.0, "n2", SUSPECT), (40.0, "n3", SUSPECT),
                                   (40.0, "n4", SUSPECT)]


def test_a_hold_lasts_while_sessions_keep_arriving_within_a_restart_grace_more() -> None:
    """A held agent is most likely in the queue of a reconnect storm: its node is not DOWN
    while other sessions still arrive, but a storm that never ends does not keep it forever."""
    def hold_until_down(arrivals_until: float) -> list[tuple[float, str, int]]:
        m = monitor(restart_grace=10.0)
        m.opened("n1", 0.0)
        m.closed("n1", 1.0, restarting="agent stopped")  # held until 11 s
        seen = []
        for step in range(1, 161):  # to 40 s
            t = step * 0.25
            if t <= arrivals_until:
                m.arriving(t)
            seen += [(t, x.node_id, x.state) for x in m.tick(t, lambda: ()).transitions]
        return seen

    assert hold_until_down(arrivals_until=0.0) == [(11.0, "n1", DOWN)]
    assert hold_until_down(arrivals_until=15.0) == [(18.0, "n1", DOWN)]
    assert hold_until_down(arrivals_until=40.0) == [(21.0, "n1", DOWN)]


def test_a_node_not_back_after_the_startup_grace_on_a_host_that_answers_is_held() -> None:
    """A reconnect storm of thousands of agents outlasts the startup grace: their hosts answer
    the probe, so their tasks are held, not replaced; the agent's session makes it ready."""
    m = monitor()
    known = (("n1", READY),)
    assert run(m, 0.25, 9.75, nodes=known) == []
    assert states(m.tick(10.0, lambda: known)) == [("n1", SUSPECT)]
    held = m.probed("n1", True, None, "127.0.0.1:22 refused", 10.5)
    assert states(held) == [("n1", AGENT_DOWN)]
    assert m.opened("n1", 20.0).state == READY
    assert run(m, 10.75, 60.0, heard=("n1",)) == []


def test_a_longer_period_counts_at_once_and_a_shorter_one_after_the_old_has_run_out() -> None:
    m = monitor()
    m.opened("n1", 0.0)
    m.set_period(3.0, 0.0)  # the cluster grew: late after 3.6 s, silent after 9 s
    assert probes(m, 0.25, 3.5) == []
    assert probes(m, 3.75, 3.75) == [(3.75, "n1")]
    m.heard("n1", 4.0)
    # It shrinks back: agents not told yet still send every 3 s, so 3 s still counts for
    # 3 old periods (until 13 s); then a node quiet for 1.2 new periods is late.
    m.set_period(1.0, 4.0)
    asked: list[tuple[float, str]] = []
    for step in range(37):  # 4.0 .. 13.0 (every tick: a gap is a stall), heard until 10 s
        t = 4.0 + step * 0.25
        if t in (7.0, 10.0):
            m.heard("n1", t)
        asked += [(t, node_id) for node_id in m.tick(t, tuple).probe]
    assert asked == [(13.0, "n1")]  # 3 s quiet: not late before 13 s, late at once after


def test_silent_nodes_are_found_whatever_order_they_were_heard_in() -> None:
    m = monitor()
    for node_id in ("a", "b", "c", "d"):
        m.opened(node_id, 0.0)
    # "a" and "c" keep talking, so they move behind "b" and "d", which fall silent; a stall of
    # the manager in between is credited to every session alike.
    seen = run(m, 0.25, 2.0, heard=("a", "c"))
    seen += [(3.0, x.node_id, x.state) for x in m.tick(3.0, tuple).transitions]  # 0.75 s stall
    seen += run(m, 3.25, 4.5, heard=("a", "c"))
    downs = {node_id: t for t, node_id, state in seen if state == DOWN}
    assert set(downs) == {"b", "d"}
    # Silent for 3 periods, the 0.75 s stall not counted.
    assert all(3.5 <= t <= 4.0 for t in downs.values()), downs


def test_a_session_not_heard_since_it_opened_waits_for_the_storm_behind_it() -> None:
    """In a reconnect storm a session's first messages queue behind those of the sessions that
    came after it: one not heard from since it opened is called silent `missed` periods after
    the last arrival (within a restart grace more); one heard once and then silent, and one
    alone, after `missed` periods as ever."""
    def verdicts(heard_at: float | None, arrivals_until: float) -> list[tuple[float, str, int]]:
        m = monitor(restart_grace=10.0)
        m.opened("n1", 0.0)
        seen = []
        for step in range(1, 121):  # to 30 s
            t = step * 0.25
            if t <= arrivals_until:
                m.arriving(t)
            if heard_at is not None and t == heard_at:
                m.heard("n1", t)
            decisions = m.tick(t, lambda: ())
            for node_id in decisions.probe:  # the host answers, its task ports too
                decisions.transitions += m.probed(node_id, True, True, "accepted", t).transitions
            seen += [(t, x.node_id, x.state) for x in decisions.transitions]
        return seen

    assert verdicts(None, arrivals_until=0.0) == [(3.25, "n1", AGENT_DOWN), (13.25, "n1", DOWN)]
    assert verdicts(None, arrivals_until=6.0)[:1] == [(9.25, "n1", AGENT_DOWN)]
    assert verdicts(None, arrivals_until=30.0)[:1] == [(13.25, "n1", AGENT_DOWN)]
    assert verdicts(1.0, arrivals_until=30.0)[:1] == [(4.25, "n1", AGENT_DOWN)]


def test_a_fresh_session_whose_host_does_not_answer_is_down_at_once_even_in_a_storm() -> None:
    m = monitor()
    m.opened("n1", 0.0)
    m.arriving(1.0)
    assert probes(m, 0.25, 1.25) == [(1.25, "n1")]
    gone = m.probed("n1", False, None, "no answer", 1.5)
    assert states(gone) == [("n1", DOWN)] and gone.close == ["n1"]
