"""NodeMonitor: decides when a node is ready, suspect, agent-down (held) or down. Pure: the clock
is an argument; the dispatcher runs the probes it asks for and reports their results.

It tells an agent that is gone from a host that is gone, and replaces tasks only for the latter:

- A node whose session opens is READY.
- An agent that says it is leaving to restart (SIGTERM) makes its node AGENT_DOWN at once: its
  tasks are held (not replaced; their replicas stay in the routing tables) for `restart_grace`.
- A session that breaks without a word (the agent crashed, or its host did) makes the node
  SUSPECT at once and asks for a probe of the host: TCP connects to its address, on the ports
  the engine published for its tasks and a fallback port (see `hostprobe`). The host answers
  (accepted or refused: its kernel is alive) and a task port accepts, or it has none ->
  AGENT_DOWN, held for `restart_grace`. The host answers but no task port accepts (the engine
  and its containers died with the agent) -> DOWN: nothing of it serves. No answer within the
  probe's deadline -> DOWN: the host is gone or cut off, and its tasks are replaced at once.
  No conclusive answer within `down_grace` -> DOWN.
- A session that runs late (no message for `late_after`, 1.2 heartbeat periods by default) asks
  for a probe as well: no answer -> DOWN at once (a power cut, a partition), and its session is
  closed; an answer changes nothing visible. A session silent for `missed` periods is closed:
  AGENT_DOWN (held) if the host and its tasks answered meanwhile (a hung agent), DOWN otherwise.
- A session not heard from since it opened is called silent once `missed` periods passed both
  since it opened and since the last session arrived (within a restart grace more): when
  thousands open at once (a reconnect storm), the first messages of each queue behind those of
  the sessions that came after it, on both sides. Closing it would send its agent to the back
  of the storm and feed the storm. Its late probe still goes: a host that does not answer is
  DOWN at once as ever.
- A held node whose agent is not back when the restart grace ends is DOWN; while sessions are
  still arriving (a reconnect storm: its agent is most likely in the queue), up to a restart
  grace later.
- After the manager starts, nodes get `startup_grace` to reconnect, longer while sessions keep
  arriving (until none arrived for `missed` periods; a session arrives when its call comes in,
  before its registration is read and written; a reconnect storm: up to `restart_grace` more)
  and while fewer than half the nodes expected (`expect`: those not DOWN at start) have a
  session: so many missing at once is the manager's own reconnect storm (its TLS handshakes
  queue up), not hosts that failed together, the reasoning of Kubernetes' node lifecycle
  controller, which stops evicting when a whole zone looks down. Then each node still without
  a session is SUSPECT and probed, as a session that broke.
- If the monitor itself did not run for longer than its tick (the manager was stalled, so
  messages waited unread), every deadline moves on by the stall: a busy manager never blames its
  nodes, nor probes them.
  A probe whose result came back late for the same reason is reported as inconclusive
  (`answered=None`) and simply asked for again.

Limits: a host whose firewall silently drops connections to every port probed looks gone (its
tasks are replaced; when its agent returns it removes the originals, as after a partition);
prefer probing ports known to be open. A host that is alive but cut off from the manager only
(while its replicas still serve other hosts) is treated as gone, as any partition is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from podium.v1 import objects

READY = objects.NodeStatus.STATE_READY
SUSPECT = objects.NodeStatus.STATE_SUSPECT
AGENT_DOWN = objects.NodeStatus.STATE_AGENT_DOWN
DOWN = objects.NodeStatus.STATE_DOWN

DEFAULT_RESTART_GRACE_S = 30.0
DEFAULT_PROBE_TIMEOUT_S = 0.5
# After the startup grace, nodes still without a session are looked at once no session arrived
# for this long, and for `missed` heartbeat periods (or at the latest a restart grace later):
# while thousands of agents are still reconnecting, those not back yet are most likely in the
# queue, not gone, and a pause in the arrivals shorter than a session's own silence is not the
# storm's end. Holds end no sooner either (within a restart grace more).
STORM_QUIET_S = 2.0


@dataclass(slots=True, frozen=True)
class Transition:
    node_id: str
    state: int
    reason: str
    # For AGENT_DOWN: the monitor's clock when the hold ends (the node goes DOWN then).
    held_until: float = 0.0


@dataclass(slots=True)
class Decisions:
    """What the dispatcher does now: store these node states, close these (silent or gone)
    sessions, probe these nodes' hosts."""

    transitions: list[Transition] = field(default_factory=list)
    close: list[str] = field(default_factory=list)
    probe: list[str] = field(default_factory=list)


class NodeMonitor:
    def __init__(self, *, period: float, missed: int = 3, down_grace: float = 1.0,
                 startup_grace: float = 10.0, restart_grace: float = DEFAULT_RESTART_GRACE_S,
                 late_after: float | None = None, tick: float | None = None,
                 now: float) -> None:
        """`tick`: how often tick() is called (default: every period); a longer gap is a stall."""
        self.period = period
        self._tick = period if tick is None else tick
        self.restart_grace = restart_grace
        self.startup_grace = startup_grace
        self._missed = missed
        self._late_ratio = 1.2 if late_after is None else late_after / period
        # After a change of period, until when the longer of the old and new one still counts.
        self._settled_at = now
        self._longest = period
        self._down_grace = down_grace
        self._startup_until = now + startup_grace
        self._last_tick = now
        # Open sessions: when last heard from, on the monitor's clock (`now` less the stalls
        # credited so far), oldest first: tick() reads only the quiet ones, not every node.
        self._heard: dict[str, float] = {}
        self._fresh: set[str] = set()  # open, not heard from since it opened
        self._stalled = 0.0
        self._late_probed: set[str] = set()  # open, late, a probe asked for
        # Open, late, and its host answered: how, and whether a task port accepted.
        self._answered: dict[str, tuple[str, bool | None]] = {}
        self._closed: dict[str, float] = {}  # broke, probe pending: when it broke
        self._held: dict[str, float] = {}  # agent down, host up: hold until
        self._swept = False
        self._last_arrival = float("-inf")  # when a session last arrived or opened
        self._expected = 0  # nodes not down when the manager started

    def set_period(self, period: float, now: float) -> None:
        """The agents are told a new heartbeat period. Those not told yet keep the old one: until
        every one of them has had `missed` old periods to hear it, lateness and silence are
        measured against the longer of the two."""
        if period == self.period:
            return
        longest = max(period, self.period, self._effective(now))
        self.period = period
        self._settled_at = now + longest * self._missed
        self._longest = longest

    def _effective(self, now: float) -> float:
        return self._longest if now < self._settled_at else self.period

    def expect(self, nodes: int) -> None:
        """How many nodes were not DOWN when the manager started: until half of them have a
        session, the startup sweep waits (within a restart grace more)."""
        self._expected = nodes

    def arriving(self, now: float) -> None:
        """A session's call came in (its registration not read or written yet): agents are
        still reconnecting."""
        self._last_arrival = now

    def opened(self, node_id: str, now: float) -> Transition:
        self._last_arrival = now
        self._forget(node_id)
        self._heard[node_id] = now - self._stalled
        self._fresh.add(node_id)
        return Transition(node_id, READY, "session opened")

    def heard(self, node_id: str, now: float) -> None:
        if node_id in self._heard:
            del self._heard[node_id]  # to the end: the order stays oldest first
            self._heard[node_id] = now - self._stalled
            self._fresh.discard(node_id)
            self._late_probed.discard(node_id)
            self._answered.pop(node_id, None)

    def closed(self, node_id: str, now: float, *, restarting: str = "") -> Decisions:
        """The node's session ended; `restarting` is the agent's own reason when it said it was
        leaving to restart ("" when the session just broke)."""
        self._forget(node_id)
        if restarting:
            return Decisions([self._hold(node_id, now, f"agent restarting ({restarting})")])
        self._closed[node_id] = now
        return Decisions([Transition(node_id, SUSPECT, "session closed; probing the host")],
                         probe=[node_id])

    def probed(self, node_id: str, host: bool | None, serving: bool | None, detail: str,
               now: float) -> Decisions:
        """The result of a probe asked for earlier: whether the host answered (None: the probe
        could not tell, asked for again) and whether one of its task ports accepted (None: it
        has none)."""
        if host is None:
            pending = node_id in self._closed or node_id in self._late_probed
            return Decisions(probe=[node_id] if pending else [])
        if node_id in self._closed:
            del self._closed[node_id]
            if host and serving is not False:
                return Decisions([self._hold(node_id, now, f"agent gone; host answers ({detail})")])
            if host:
                return Decisions([Transition(
                    node_id, DOWN, f"agent gone and its tasks not answering ({detail})")])
            return Decisions([Transition(node_id, DOWN, f"host not answering ({detail})")])
        if node_id in self._late_probed:
            if host:
                self._answered[node_id] = (detail, serving)
                return Decisions()
            quiet = now - self._stalled - self._heard[node_id]
            self._forget(node_id)
            return Decisions([Transition(
                node_id, DOWN, f"no heartbeat for {quiet:.1f} s and host not answering "
                f"({detail})")], close=[node_id])
        return Decisions()  # stale: the node reconnected or changed state meanwhile

    def tick(self, now: float, nodes: Callable[[], Iterable[tuple[str, int]]]) -> Decisions:
        """What is due now. `nodes` gives every known (node id, current state); it is called
        once, when the startup grace ends."""
        stall = now - self._last_tick - self._tick
        self._last_tick = now
        if stall > 0:
            self._stalled += stall  # every open session's silence, at once
            for table in (self._closed, self._held):
                for node_id in table:
                    table[node_id] += stall
            self._startup_until += stall
            self._settled_at += stall
        out = Decisions()
        period = self._effective(now)
        silence, late = period * self._missed, period * self._late_ratio
        arrivals_quiet = now - self._last_arrival
        quiet_since = now - self._stalled - late
        quiet_ones = []
        for node_id, heard in self._heard.items():
            if heard >= quiet_since:
                break  # this one and every later one heard within `late`
            quiet_ones.append((node_id, heard))
        for node_id, heard in quiet_ones:
            quiet = now - self._stalled - heard
            if quiet > silence and (node_id not in self._fresh or arrivals_quiet > silence
                                    or quiet > silence + self.restart_grace):
                answered = self._answered.get(node_id)
                self._forget(node_id)
                out.close.append(node_id)
                if answered is not None and answered[1] is not False:
                    out.transitions.append(self._hold(
                        node_id, now, f"no heartbeat for {quiet:.1f} s; host answers "
                        f"({answered[0]}): agent hung?"))
                else:
                    out.transitions.append(
                        Transition(node_id, DOWN, f"no heartbeat for {quiet:.1f} s"))
            elif quiet > late and node_id not in self._late_probed:
                self._late_probed.add(node_id)
                out.probe.append(node_id)
        for node_id, closed in list(self._closed.items()):
            if now - closed >= self._down_grace:
                del self._closed[node_id]
                out.transitions.append(Transition(
                    node_id, DOWN, f"session closed {now - closed:.1f} s ago; host did not "
                    "answer a probe in time"))
        storming = arrivals_quiet < max(STORM_QUIET_S, silence)
        for node_id, until in list(self._held.items()):
            if now >= until and not (storming and now < until + self.restart_grace):
                del self._held[node_id]
                out.transitions.append(Transition(
                    node_id, DOWN, f"agent not back within the restart grace "
                    f"({self.restart_grace:g} s)"))
        if not self._swept and now >= self._startup_until and (
                (not storming and len(self._heard) * 2 >= self._expected)
                or now >= self._startup_until + self.restart_grace):
            self._swept = True
            tracked = self._heard.keys() | self._closed.keys() | self._held.keys()
            for node_id, state in nodes():
                if (state != DOWN and node_id not in tracked
                        and not any(t.node_id == node_id for t in out.transitions)):
                    # As a session that broke: the host is probed, and its tasks are held
                    # while it answers (a reconnect storm of thousands of agents outlasts the
                    # grace; their hosts are fine) and replaced at once when it does not.
                    self._closed[node_id] = now
                    out.transitions.append(Transition(
                        node_id, SUSPECT, "no session since the manager started; probing "
                        "the host"))
                    out.probe.append(node_id)
        return out

    def _hold(self, node_id: str, now: float, why: str) -> Transition:
        until = now + self.restart_grace
        self._held[node_id] = until
        return Transition(node_id, AGENT_DOWN,
                          f"{why}; tasks held for {self.restart_grace:g} s", held_until=until)

    def _forget(self, node_id: str) -> None:
        for table in (self._heard, self._answered, self._closed, self._held):
            table.pop(node_id, None)
        self._late_probed.discard(node_id)
        self._fresh.discard(node_id)
