"""A model of the Kubernetes Horizontal Pod Autoscaler with its documented defaults, run on the
same load trace as the autoscaling bench so that its figures stand beside Podium's.

    run = simulate(Workload(demand=[...], capacity=0.25, target=0.15, min=2, max=10, start=2,
                            start_s=2.0), HpaSettings(), scrape_phase=3, sync_phase=11)
    run.decisions  # [(second, from, to), ...]; run.counts: the count at every second

Pure: no clock, no I/O, whole seconds. What it models (kube-controller-manager and
metrics-server defaults, from their documentation and pkg/controller/podautoscaler):

- The demand: per second, what the service is asked for in the target's unit (cores for a cpu
  target, requests/s for a request-rate target). Each ready pod serves an equal share, at most
  `capacity` (a pod saturated at its cpu limit serves no more): that is its usage that second.
- metrics-server scrapes every `scrape_s` (--metric-resolution, 15 s); each pod's value is its
  mean usage over the last `window_s` (the kubelet's rate window: 30-60 s in practice) during which
  it was ready; a pod ready for less than `first_metric_s` has no value yet (missing).
- The controller syncs every `sync_s` (--horizontal-pod-autoscaler-sync-period, 15 s) on the
  latest scrape: ratio = mean value / target over the pods with a value; within 1 ± `tolerance`
  (0.1) no change; else, when pods are missing (or not ready), the ratio is computed again with
  them at 0 % when scaling up and, when scaling down, missing pods at 100 % (not-ready pods left
  out); no change if that reverses the direction or falls within the tolerance; desired =
  ceil(ratio * pods counted).
- Stabilisation (behavior defaults): scale-up at once, scale-down to the highest recommendation
  of the last `down_window_s` (300 s); scale-up limited per `up_period_s` (15 s) to
  max(`up_pods` (4), `up_percent` (100 %) of the count at the period's start); min..max.
- A new pod serves `start_s` after the decision (the caller passes Podium's measured time, so that
  only the control loops differ); a pod removed stops serving at once.

The scrape and sync phases (when in the trace the 15 s clocks tick) are arguments: the bench runs
the model for every phase and reports the spread.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class HpaSettings:
    sync_s: int = 15
    scrape_s: int = 15
    window_s: int = 30
    first_metric_s: int = 15
    tolerance: float = 0.1
    down_window_s: int = 300
    up_pods: int = 4
    up_percent: float = 100.0
    up_period_s: int = 15


@dataclass(frozen=True, slots=True)
class Workload:
    demand: Sequence[float]  # per second, in the target's unit, for the whole service
    capacity: float  # the most one pod serves per second, same unit
    target: float  # per pod, same unit
    min: int
    max: int
    start: int  # pods at second 0, all ready
    start_s: float  # from a scale-up decision to the new pods serving


@dataclass(slots=True)
class HpaRun:
    counts: list[int] = field(default_factory=list)  # the desired count at each second
    ready: list[int] = field(default_factory=list)  # pods serving at each second
    decisions: list[tuple[float, int, int]] = field(default_factory=list)  # (second, from, to)


def desired_count(values: Sequence[float], missing: int, unready: int, current: int,
                  target: float, tolerance: float) -> int:
    """One sync's raw recommendation from the pods' values (the HPA's replica calculator)."""
    if not values:
        return current
    ratio = sum(values) / len(values) / target
    if not missing and not unready:
        if abs(ratio - 1) <= tolerance:
            return current
        return math.ceil(ratio * len(values) - 1e-9)
    counted = list(values)
    if missing:
        if ratio < 1:
            counted += [target] * missing
        elif ratio > 1:
            counted += [0.0] * missing
    if unready and ratio > 1:
        counted += [0.0] * unready
    new_ratio = sum(counted) / len(counted) / target
    if (abs(new_ratio - 1) <= tolerance or (new_ratio < 1 < ratio) or (ratio < 1 < new_ratio)):
        return current
    return math.ceil(new_ratio * len(counted) - 1e-9)


def _ticks(second: int, phase: int, period: int) -> bool:
    return second >= phase and (second - phase) % period == 0


def simulate(w: Workload, s: HpaSettings = HpaSettings(), *, scrape_phase: int = 0,
             sync_phase: int = 0) -> HpaRun:
    if not (0 <= scrape_phase < s.scrape_s and 0 <= sync_phase < s.sync_s):
        raise ValueError("phases within 0..period-1")
    if not w.min <= w.start <= w.max or w.capacity <= 0 or w.target <= 0:
        raise ValueError("workload: min <= start <= max, capacity and target above 0")
    run = HpaRun()
    pods: list[float] = [-1e9] * w.start  # each pod's ready time (serving from then on)
    usage: list[float] = []  # per ready pod, at each second
    snapshot: dict[int, float] = {}  # pod index (in creation order) -> value, at the last scrape
    ids: list[int] = list(range(w.start))  # pods' identities, parallel to `pods`
    next_id = w.start
    count = w.start
    recommendations: list[tuple[int, int]] = []  # (second, raw recommendation)
    ups: list[tuple[int, int]] = []  # (second, pods added)
    for t in range(len(w.demand)):
        ready = sum(1 for r in pods if r <= t)
        usage.append(min(w.capacity, w.demand[t] / ready) if ready else 0.0)
        if _ticks(t, scrape_phase, s.scrape_s):
            snapshot = {}
            for pid, since in zip(ids, pods, strict=True):
                if since <= t and t - since >= s.first_metric_s:
                    start = max(t - s.window_s, math.ceil(since), 0)
                    window = usage[start:t] or usage[t:t + 1]
                    snapshot[pid] = sum(window) / len(window)
        if _ticks(t, sync_phase, s.sync_s):
            values = [snapshot[pid] for pid in ids if pid in snapshot]
            unready = sum(1 for r in pods if r > t)
            missing = len(pods) - unready - len(values)
            raw = desired_count(values, missing, unready, count, w.target, s.tolerance)
            raw = max(w.min, min(w.max, raw))
            recommendations.append((t, raw))
            recommendations = [(at, r) for at, r in recommendations
                               if at > t - s.down_window_s]
            wanted = count
            if raw > count:
                wanted = raw
            down = max(r for _, r in recommendations)
            if down < count:
                wanted = down
            if wanted > count:
                added = sum(n for at, n in ups if at > t - s.up_period_s)
                base = count - added
                limit = max(base + s.up_pods, math.ceil(base * (1 + s.up_percent / 100)))
                wanted = min(wanted, limit)
            wanted = max(w.min, min(w.max, wanted))
            if wanted != count:
                run.decisions.append((float(t), count, wanted))
                if wanted > count:
                    ups.append((t, wanted - count))
                    for _ in range(wanted - count):
                        pods.append(t + w.start_s)
                        ids.append(next_id)
                        next_id += 1
                else:
                    # Not-ready pods go first, then the newest (the ReplicaSet's ranking).
                    order = sorted(range(len(pods)), key=lambda i: (pods[i] <= t, -pods[i]))
                    drop = set(order[:count - wanted])
                    pods = [r for i, r in enumerate(pods) if i not in drop]
                    ids = [p for i, p in enumerate(ids) if i not in drop]
                count = wanted
        run.counts.append(count)
        run.ready.append(sum(1 for r in pods if r <= t))
    return run


def simulate_phases(w: Workload, settings: Sequence[HpaSettings], *,
                    phase_step: int = 1) -> list[HpaRun]:
    """The model at every scrape and sync phase (every `phase_step` seconds), for each of
    `settings`."""
    return [simulate(w, s, scrape_phase=a, sync_phase=b) for s in settings
            for a in range(0, s.scrape_s, phase_step) for b in range(0, s.sync_s, phase_step)]
