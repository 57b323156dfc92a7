"""NodeMonitor: decides when a node is ready, suspect or down. Pure: the clock is an argument.

- A node whose session opens is READY.
- A session that breaks (connection reset or closed: the agent or its host crashed) makes the
  node SUSPECT at once and DOWN after `down_grace` unless a new session opens first.
- A session that falls silent (no message for `missed` heartbeat periods: a partition, a power
  cut, a hung agent) makes the node DOWN, and its session is closed.
- After the manager starts, nodes get `startup_grace` to reconnect before any is marked DOWN.
- If the monitor itself did not run for more than a period (the manager was stalled, so messages
  waited unread), every deadline moves on by the stall: a busy manager never blames its nodes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from podium.v1 import objects

READY = objects.NodeStatus.STATE_READY
SUSPECT = objects.NodeStatus.STATE_SUSPECT
DOWN = objects.NodeStatus.STATE_DOWN


@dataclass(slots=True, frozen=True)
class Transition:
    node_id: str
    state: int
    reason: str


class NodeMonitor:
    def __init__(self, *, period: float, missed: int = 3, down_grace: float = 1.0,
                 startup_grace: float = 10.0, now: float) -> None:
        self.period = period
        self._silence = period * missed
        self._down_grace = down_grace
        self._startup_until = now + startup_grace
        self._last_tick = now
        self._heard: dict[str, float] = {}
        self._closed: dict[str, float] = {}
        self._swept = False

    def opened(self, node_id: str, now: float) -> Transition:
        self._closed.pop(node_id, None)
        self._heard[node_id] = now
        return Transition(node_id, READY, "session opened")

    def heard(self, node_id: str, now: float) -> None:
        if node_id in self._heard:
            self._heard[node_id] = now

    def closed(self, node_id: str, now: float) -> Transition:
        self._heard.pop(node_id, None)
        self._closed[node_id] = now
        return Transition(node_id, SUSPECT, "session closed")

    def tick(
        self, now: float, nodes: Callable[[], Iterable[tuple[str, int]]]
    ) -> tuple[list[Transition], list[str]]:
        """Transitions due now, and the nodes whose (silent) sessions to close. `nodes` gives
        every known (node id, current state); it is called once, when the startup grace ends."""
        stall = now - self._last_tick - self.period
        self._last_tick = now
        if stall > 0:
            for table in (self._heard, self._closed):
                for node_id in table:
                    table[node_id] += stall
            self._startup_until += stall
        transitions: list[Transition] = []
        silent: list[str] = []
        for node_id, heard in list(self._heard.items()):
            if now - heard > self._silence:
                del self._heard[node_id]
                silent.append(node_id)
                transitions.append(
                    Transition(node_id, DOWN, f"no heartbeat for {now - heard:.1f} s")
                )
        for node_id, closed in list(self._closed.items()):
            if now - closed >= self._down_grace:
                del self._closed[node_id]
                transitions.append(Transition(
                    node_id, DOWN, f"session closed {now - closed:.1f} s ago; not back"))
        if not self._swept and now >= self._startup_until:
            self._swept = True
            for node_id, state in nodes():
                if (state != DOWN and node_id not in self._heard and node_id not in self._closed
                        and not any(t.node_id == node_id for t in transitions)):
                    transitions.append(
                        Transition(node_id, DOWN, "no session since the manager started"))
        return transitions, silent
