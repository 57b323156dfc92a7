"""How the autoscaler chooses a count (pure: figures and the clock in, a count and its reason out).

`recommend` applies the Kubernetes HPA's rule to one moment's figures: per target, the count
that brings the average per ready replica back to the target, desired = ceil(total / target),
where total is summed over the ready replicas: a replica that is not ready, or whose figures
are missing, adds nothing (the HPA counts them as 0 % when scaling up; it counts missing ones
at the target when scaling down, where Podium does not scale down at all: the caller holds
it). No change while the average is within 1 ± tolerance of the target; a result that moves
against the average (more replicas while under the target, fewer while over it) is no change
either. Down goes only as far as leaves the average a tolerance under the target (desired =
ceil(total / (target * (1 - tolerance)))): a load that wanders around the boundary between two
counts then stays on the higher one instead of flipping between them, since going back up needs
the average above 1 + tolerance. The largest count over the targets wins, within min..max.

`Stabilizer` turns recommendations into decisions for one service. Up as soon as two readings
in a row ask for more, to the lower of the two (by at most max_step_up), when the excess is
urgent: some reading since the average went over the target (1 + tolerance) was at least
URGENT_RATIO times it (a 60 % cpu target at 90 %: replicas near their limit, requests about to
queue). A one-second spike in a noisy figure adds nothing, for one reading (a second) of
reaction. A modest excess (under URGENT_RATIO all along) leaves the replicas headroom, so it must
last MODEST_UP_READINGS readings in a row, and goes up to the lowest of them: a shared machine's
cpu figure surges by a third for a few seconds at a steady request rate, and a scale-up on such
a surge is undone a window later. Down only to the highest
count recommended over the scale-down window (by at most max_step_down), never before it has
watched a whole window (so a restarted manager makes no burst of decisions on its first
figures), nor while the caller holds it (figures missing, replicas not ready, an update in
progress). Up is held when the cluster is at capacity.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from podium.rules.autoscale import Settings, describe


@dataclass(frozen=True, slots=True)
class Figure:
    name: str  # a podium.rules.autoscale.TARGETS name
    target: float  # per ready replica
    total: float  # summed over the ready replicas whose figures are known
    missing: bool = False  # some ready replica's figures are not known


@dataclass(frozen=True, slots=True)
class Recommendation:
    count: int  # within min..max
    reason: str  # the figure that set it: "cpu 142% of 60% target"
    averages: dict[str, float]  # target name -> current average per ready replica
    wanted: int  # before min..max
    ratio: float = 0.0  # the average over its target, of the figure that set the count


def recommend(settings: Settings, current: int, ready: int,
              figures: Sequence[Figure]) -> Recommendation:
    averages = {f.name: f.total / ready for f in figures} if ready else {}
    best, reason, best_ratio = 0, "", 0.0
    for figure in figures:
        if not ready:
            break
        average = averages[figure.name]
        ratio = average / figure.target
        wanted = math.ceil(figure.total / figure.target - 1e-9)
        if abs(ratio - 1) <= settings.tolerance:
            wanted = current
        elif ratio > 1:
            wanted = max(wanted, current)
        else:
            # Down only as far as leaves the average a tolerance under the target: the reverse
            # step then needs a swing of twice the tolerance, not a wobble around the target.
            wanted = min(math.ceil(figure.total / (figure.target * (1 - settings.tolerance))
                                   - 1e-9), current)
        if wanted > best or not reason:
            best, reason, best_ratio = wanted, describe(figure.name, average, figure.target), ratio
    if not reason:
        best, reason = current, "no ready replica"
    return Recommendation(settings.bound(best), reason, averages, best, best_ratio)


@dataclass(frozen=True, slots=True)
class Decision:
    count: int  # the count to set (the current one when nothing changes)
    reason: str  # why it changed ("cpu 142% of 60% target"); empty when it did not
    holding: str  # why it does not move toward the recommendation now; empty when it does


# Readings in a row that must ask for more before a scale-up, when the excess is urgent.
UP_READINGS = 2
# An average this many times its target, or more, makes the excess it is part of urgent.
URGENT_RATIO = 1.5
# Readings in a row that a modest excess (under URGENT_RATIO) must last before a scale-up.
MODEST_UP_READINGS = 10


class Stabilizer:
    def __init__(self, started: float) -> None:
        self._started = started
        self._history: deque[tuple[float, int]] = deque()
        self._recent: deque[int] = deque(maxlen=MODEST_UP_READINGS)
        self._urgent = False  # a reading since the average went over the target was urgent

    def decide(self, now: float, settings: Settings, current: int, rec: Recommendation, *,
               hold_up: str = "", hold_down: str = "") -> Decision:
        window = settings.scale_down_window_s
        self._history.append((now, rec.count))
        self._recent.append(rec.count)
        over = rec.ratio > 1 + settings.tolerance
        self._urgent = over and (self._urgent or rec.ratio >= URGENT_RATIO)
        while self._history and self._history[0][0] < now - window:
            self._history.popleft()
        bounded = settings.bound(current)
        if bounded != current:  # the policy's bounds changed under the count
            return Decision(bounded, f"outside {settings.min}..{settings.max}", "")
        if rec.count > current:
            if hold_up:
                return Decision(current, "", hold_up)
            asking = list(itertools.takewhile(lambda count: count > current,
                                              reversed(self._recent)))
            if self._urgent and len(asking) >= UP_READINGS:
                up_to = min(asking[:UP_READINGS])
            elif len(asking) >= MODEST_UP_READINGS:
                up_to = min(asking)
            elif self._urgent:
                return Decision(current, "", f"scale-up to {rec.count} waits for a second "
                                             "reading")
            else:
                return Decision(current, "", f"scale-up to {rec.count} waits until "
                                             f"{MODEST_UP_READINGS} readings in a row ask for "
                                             f"it ({len(asking)} so far): {rec.reason} is under "
                                             f"{URGENT_RATIO:g}x its target")
            step = settings.max_step_up
            return Decision(min(up_to, current + step) if step else up_to, rec.reason, "")
        if rec.count == current:
            at_max = rec.wanted > settings.max
            return Decision(current, "", f"at max ({settings.max}): {rec.reason}" if at_max else "")
        highest = max(count for _, count in self._history)
        if now - self._started < window:
            return Decision(current, "", f"scale-down to {rec.count} waits until it has watched "
                                         f"{window:g}s of figures")
        if hold_down:
            return Decision(current, "", f"scale-down to {rec.count} held: {hold_down}")
        if highest >= current:
            return Decision(current, "", f"scale-down to {rec.count} held: {highest} was "
                                         f"recommended within the last {window:g}s")
        step = settings.max_step_down
        return Decision(max(highest, current - step) if step else highest, rec.reason, "")
