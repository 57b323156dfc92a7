"""The autoscaling bench's figures, table, chart and replay, from what a run recorded (pure: no
cluster, no clock; tests/bench/test_autoscalereport.py feeds it made-up runs).

One `Trace` per scenario (a cpu target, a requests_per_second target): the load's schedule (low,
4x from `step_up`, low again from `step_down`), one `Sample` a second (the count, ready replicas,
the manager's figures), every decision the manager made (from its `service` events), and when each
new replica first answered through the mesh. Times are seconds from the scenario's start.

Figures per scenario (JSON names `<scenario>_<figure>_<unit>`, the HPA model's `hpa_` before):
- decision_s: from the load step to the first scale-up decision; crossing_to_decision_s: from
  the last sample before that decision whose average (the manager's, autoscale_status.metrics)
  was still within the tolerance, to the decision: the manager's own reaction, an upper bound
  (the average crossed somewhere in between; samples are a second apart).
- serving_s: from a scale-up decision to the last of its new replicas answering through the
  mesh, the worst over the scale-ups after the step (a replica that never answered: None).
- enough_replicas_s: from the load step to the first count that covers the high load (ceil of
  the steady phase's demand in targets).
- steady_changes_count: count changes from `steady_from` to `step_down` (the steady phase).
- scale_down_start_s: from the load drop to the first decision that lowers the count;
  scale_down_done_s: to the count reaching the run's last count.
- failed_requests_count of requests_count, throughout the scenario.
- steady_of_target_ratio: the average per ready replica in the steady phase over the target;
  steady_demand_in_targets_ratio: the steady total over the target (ceil() of it: the count);
  steady_noise_ratio: the standard deviation of the per-second total there over its mean;
  steady_cpu_per_request_range_ms: the lowest and highest cpu a request cost over 30 s there.
The HPA model (bench/_hpa.py) runs on the same demand for every scrape and sync phase and both
rate windows (30 s, 60 s); its figures are the median over those runs, with the range.

The replay feeds the recorded per-second totals through podium.manager.scaling (recommend +
Stabilizer, as the manager does) with other scale-down windows (and with the figures averaged over
5 s, for comparison): the real count until the steady phase (the stabiliser watching), then the
replay's own, replicas ready `ready_s` after a scale-up (the run's median serving time); it counts
the changes each window would have made in the steady phase and when it would have started the
scale-down. Open loop: the totals are what the real count saw; in the steady phase no replica is
saturated, so a total does not depend on the count (demand is demand).
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench import _hpa, _plot
from podium.manager.scaling import Figure, Stabilizer, recommend
from podium.rules import autoscale as rules

GOAL_DECISION_S = 3.0
GOAL_SERVING_S = 5.0
GOAL_STEADY_CHANGES = 0
GOAL_DOWN_MARGIN_S = 2.0
REPLAY_WINDOWS_S = (0.0, 5.0, 10.0, 20.0, 30.0, 60.0)
# The figures as the manager reads them (1 s), and averaged over a few seconds, for comparison.
REPLAY_AVERAGES_S = (1, 5)
HPA_WINDOWS_S = (30, 60)
SHORT = {"cpu": "cpu", "requests_per_second": "rps"}


@dataclass(slots=True)
class Sample:
    t: float
    replicas: int  # spec.replicas
    ready: int  # tasks running and ready
    total: float  # the target's figure summed over the ready replicas (from GetLoad)
    current: float | None  # the manager's average per ready replica (autoscale_status.metrics)
    partial: bool = False  # the manager's figures were missing for some replica
    rate: float = 0.0  # the load asked for, requests/s
    cpu_cores: float = 0.0  # every replica's cpu, summed
    served_per_s: float = 0.0  # requests/s through the mesh, summed over the replicas
    holding: str = ""


@dataclass(slots=True)
class Decision:
    t: float  # autoscale_status.last_time
    before: int
    after: int
    text: str


@dataclass(slots=True)
class Trace:
    target_name: str  # "cpu" or "requests_per_second"
    target: float  # per ready replica (a share of the cpus limit for cpu)
    tolerance: float
    window_s: float
    min: int
    max: int
    cpus: float  # each replica's cpus limit
    low_rate: float
    high_rate: float
    step_up: float
    steady_from: float
    step_down: float
    end: float
    samples: list[Sample] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    # Per scale-up decision after the step: (decision time, when its last new replica first
    # answered through the mesh, or None if one never did).
    serving: list[tuple[float, float | None]] = field(default_factory=list)
    requests: int = 0
    failed: int = 0
    failure_kinds: dict[str, int] = field(default_factory=dict)
    cpu_per_request_s: float = 0.0  # measured on the steady phase

    @property
    def key(self) -> str:
        return SHORT[self.target_name]

    def rate_at(self, t: float) -> float:
        return self.high_rate if self.step_up <= t < self.step_down else self.low_rate


def trace_to_json(trace: Trace) -> dict[str, Any]:
    """The trace as plain JSON values (bench/autoscale.py --dir keeps it; --from reads it)."""
    out = {name: getattr(trace, name) for name in Trace.__slots__}
    out["samples"] = [{n: getattr(x, n) for n in Sample.__slots__} for x in trace.samples]
    out["decisions"] = [{n: getattr(x, n) for n in Decision.__slots__} for x in trace.decisions]
    out["serving"] = [list(x) for x in trace.serving]
    return out


def trace_from_json(data: dict[str, Any]) -> Trace:
    fields = {k: v for k, v in data.items() if k not in ("samples", "decisions", "serving")}
    trace = Trace(**fields)
    trace.samples = [Sample(**x) for x in data["samples"]]
    trace.decisions = [Decision(**x) for x in data["decisions"]]
    trace.serving = [(a, b) for a, b in data["serving"]]
    return trace


# -- figures from a list of decisions (Podium's or the model's) ---------------------------------


def first_up(decisions: Sequence[Decision], after: float) -> Decision | None:
    return next((d for d in decisions if d.t >= after and d.after > d.before), None)


def decision_figures(decisions: Sequence[Decision], *, step_up: float, steady_from: float,
                     step_down: float, last_count: int, needed: int
                     ) -> dict[str, float | int | None]:
    up = first_up(decisions, step_up)
    enough = next((d for d in decisions if step_up <= d.t < step_down and d.after >= needed),
                  None)
    down = next((d for d in decisions if d.t >= step_down and d.after < d.before), None)
    done = next((d for d in decisions if d.t >= step_down and d.after == last_count), None)
    return {
        "decision_s": None if up is None else up.t - step_up,
        "enough_replicas_s": None if enough is None else enough.t - step_up,
        "steady_changes_count": sum(1 for d in decisions if steady_from <= d.t < step_down),
        "scale_down_start_s": None if down is None else down.t - step_down,
        "scale_down_done_s": None if done is None else done.t - step_down,
    }


def needed(trace: Trace) -> int:
    """The count the high load asks for: ceil of its demand in targets, within min..max."""
    wanted = math.ceil(demand(trace, trace.step_up) / trace.target - 1e-9)
    return max(trace.min, min(trace.max, wanted))


def crossing(trace: Trace, before: float) -> float:
    """The last sample (or the step) before `before` whose average was within the tolerance:
    the average crossed the target after it."""
    limit = trace.target * (1 + trace.tolerance)
    under = [s.t for s in trace.samples if trace.step_up <= s.t <= before
             and s.current is not None and s.current <= limit]
    return max(under, default=trace.step_up)


def podium_figures(trace: Trace) -> dict[str, Any]:
    last = trace.samples[-1].replicas if trace.samples else trace.min
    f: dict[str, Any] = decision_figures(trace.decisions, step_up=trace.step_up,
                                         steady_from=trace.steady_from,
                                         step_down=trace.step_down, last_count=last,
                                         needed=needed(trace))
    up = first_up(trace.decisions, trace.step_up)
    f["crossing_to_decision_s"] = None if up is None else up.t - crossing(trace, up.t)
    waits = [None if answered is None else answered - at for at, answered in trace.serving]
    f["serving_s"] = (None if not waits or any(w is None for w in waits)
                      else max(w for w in waits if w is not None))
    f["serving_each_s"] = waits
    steady = [x for x in trace.samples if trace.steady_from <= x.t < trace.step_down and x.ready]
    totals = [x.total for x in steady]
    mean = statistics.fmean(totals) if totals else 0.0
    # How much the per-second figures moved while the load did not: what the window rides out.
    f["steady_noise_ratio"] = (round(statistics.pstdev(totals) / mean, 3)
                               if len(totals) > 1 and mean > 0 else None)
    f["steady_of_target_ratio"] = (round(statistics.fmean(x.total / x.ready for x in steady)
                                         / trace.target, 3) if steady else None)
    # The demand in targets: ceil() of it is the count the formula asks for; near a whole number
    # the noise moves it from one count to the next.
    f["steady_demand_in_targets_ratio"] = round(mean / trace.target, 2) if totals else None
    # The cpu one request cost, per 30 s of the steady phase: the machine's speed drifts, and with
    # it a cpu target's demand under a steady request rate.
    costs = [statistics.median(chunk) / trace.high_rate
             for a in range(int(trace.steady_from), int(trace.step_down), 30)
             if (chunk := [x.cpu_cores for x in steady if a <= x.t < a + 30])]
    f["steady_cpu_per_request_range_ms"] = ([round(min(costs) * 1000, 2),
                                              round(max(costs) * 1000, 2)] if costs else None)
    f["failed_requests_count"] = trace.failed
    f["requests_count"] = trace.requests
    f["count_over_time_text"] = count_text(trace.decisions, trace.samples[0].replicas
                                           if trace.samples else trace.min)
    return f


def count_text(decisions: Sequence[Decision], first: int) -> str:
    parts = [f"{first} @0s"] + [f"{d.after} @{d.t:.1f}s" for d in decisions]
    return ", ".join(parts)


# -- the HPA model on the same trace -------------------------------------------------------------


def demand(trace: Trace, t: float) -> float:
    """What the service is asked for at second t, in the target's total unit (shares of one
    replica's limit for cpu, requests/s otherwise)."""
    rate = trace.rate_at(t)
    if trace.target_name == "cpu":
        return rate * trace.cpu_per_request_s / trace.cpus
    return rate


def workload(trace: Trace, start_s: float, tail_s: float = 700.0) -> _hpa.Workload:
    """The trace's demand, second by second, continued at the low rate for `tail_s` so that the
    model's 300 s scale-down fits."""
    seconds = math.ceil(max(trace.end, trace.step_down) + tail_s)
    cpu = trace.cpu_per_request_s
    capacity = 1.0 if trace.target_name == "cpu" else (trace.cpus / cpu if cpu > 0 else 1e9)
    return _hpa.Workload(demand=[demand(trace, t) for t in range(seconds)], capacity=capacity,
                         target=trace.target, min=trace.min, max=trace.max, start=trace.min,
                         start_s=start_s)


def hpa_runs(trace: Trace, start_s: float, phase_step: int = 1) -> list[_hpa.HpaRun]:
    settings = [_hpa.HpaSettings(window_s=w, tolerance=trace.tolerance) for w in HPA_WINDOWS_S]
    return _hpa.simulate_phases(workload(trace, start_s), settings, phase_step=phase_step)


def model_decisions(run: _hpa.HpaRun) -> list[Decision]:
    return [Decision(t, a, b, "") for t, a, b in run.decisions]


def hpa_figures(trace: Trace, runs: Sequence[_hpa.HpaRun], start_s: float
                ) -> tuple[dict[str, Any], _hpa.HpaRun]:
    """Median and range of each figure over the model's runs; and the run whose first decision
    is the median one (drawn in the chart)."""
    # The model runs on whole seconds: its load steps at the first whole second of each phase.
    per_run = [decision_figures(model_decisions(r), step_up=math.ceil(trace.step_up),
                                steady_from=math.ceil(trace.steady_from),
                                step_down=math.ceil(trace.step_down), last_count=r.counts[-1],
                                needed=needed(trace))
               for r in runs]
    out: dict[str, Any] = {}
    for name in per_run[0]:
        values = [float(v) for f in per_run if (v := f[name]) is not None]
        out[name] = _median(values)
        out[range_key(name)] = [min(values), max(values)] if values else None
    out["serving_s"] = start_s
    decisions = [f["decision_s"] for f in per_run]
    known = sorted((float(d), i) for i, d in enumerate(decisions) if d is not None)
    typical = runs[known[len(known) // 2][1]] if known else runs[0]
    return out, typical


def range_key(name: str) -> str:
    """decision_s -> decision_range_s: the range's name keeps the unit last."""
    base, _, unit = name.rpartition("_")
    return f"{base}_range_{unit}"


def _median(values: Sequence[float | int | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(statistics.median(known)) if known else None


# -- replay through the manager's decision function ----------------------------------------------


def replay(trace: Trace, window_s: float, ready_s: float, average_s: int = 1) -> list[Decision]:
    """The decisions podium.manager.scaling would make in the steady phase and after it, on the
    recorded totals (averaged over the last `average_s` samples; 1: as recorded), with
    scale-down window `window_s`; a new replica is ready `ready_s` after its decision. From the
    step to the steady phase the real count is kept and the stabiliser only watches, so that
    its window holds what the manager's held when the steady phase began."""
    settings = rules.Settings(min=trace.min, max=trace.max,
                              targets={trace.target_name: trace.target},
                              tolerance=trace.tolerance, scale_down_window_s=window_s,
                              max_step_up=0, max_step_down=0)
    # The manager had watched the service since its deploy, long before the step.
    stabilizer = Stabilizer(trace.samples[0].t if trace.samples else 0.0)
    count, ready_at = 0, []
    recent: deque[float] = deque(maxlen=max(1, average_s))
    out: list[Decision] = []
    for s in trace.samples:
        if s.t < trace.step_up:
            continue
        recent.append(s.total)
        total = statistics.fmean(recent)
        if s.t < trace.steady_from:
            count, ready_at = s.replicas, [s.t] * s.ready
        ready = sum(1 for r in ready_at if r <= s.t)
        hold = "not ready" if ready < count else ("figures missing" if s.partial else "")
        figure = Figure(trace.target_name, trace.target, total, s.partial)
        rec = recommend(settings, count, ready, [figure])
        decision = stabilizer.decide(s.t, settings, count, rec, hold_down=hold)
        if s.t < trace.steady_from or decision.count == count:
            continue
        out.append(Decision(s.t, count, decision.count, decision.reason))
        if decision.count > count:
            ready_at += [s.t + ready_s] * (decision.count - count)
        else:
            ready_at = sorted(ready_at)[:decision.count]
        count = decision.count
    return out


def replay_figures(trace: Trace, ready_s: float, windows: Sequence[float] = REPLAY_WINDOWS_S,
                   averages: Sequence[int] = REPLAY_AVERAGES_S) -> dict[str, dict[str, Any]]:
    """Window (as text, seconds) -> per averaging of the figures (1 s: as recorded), the changes
    in the steady phase and the scale-down start of the replay."""
    out: dict[str, dict[str, Any]] = {}
    for window in windows:
        row: dict[str, Any] = {}
        for average in averages:
            made = replay(trace, window, ready_s, average)
            f = decision_figures(made, step_up=trace.step_up, steady_from=trace.steady_from,
                                 step_down=trace.step_down, last_count=trace.min,
                                 needed=needed(trace))
            row[f"steady_changes_{average}s_mean_count"] = f["steady_changes_count"]
            row[f"scale_down_start_{average}s_mean_s"] = f["scale_down_start_s"]
        out[f"{window:g}"] = row
    return out


# -- the whole report ------------------------------------------------------------------------------


def scenario_figures(trace: Trace, *, phase_step: int = 1) -> tuple[dict[str, Any], _hpa.HpaRun]:
    """Every figure of one scenario, keyed `<scenario>_...` and `hpa_<scenario>_...`; the HPA
    model at scrape and sync phases `phase_step` seconds apart."""
    mine = podium_figures(trace)
    served = [w for w in mine["serving_each_s"] if w is not None]
    start_s = float(statistics.median(served)) if served else 2.0
    hpa, typical = hpa_figures(trace, hpa_runs(trace, start_s, phase_step), start_s)
    k = trace.key
    out: dict[str, Any] = {f"{k}_{name}": value for name, value in mine.items()}
    out |= {f"hpa_{k}_{name}": value for name, value in hpa.items()}
    out[f"hpa_{k}_count_over_time_text"] = count_text(model_decisions(typical), trace.min)
    out[f"{k}_replay_by_window_dict"] = replay_figures(trace, start_s)
    out[f"{k}_target_text"] = rules.show(trace.target_name, trace.target)
    out[f"{k}_scale_down_window_s"] = trace.window_s
    out[f"{k}_low_rate_per_s"] = trace.low_rate
    out[f"{k}_high_rate_per_s"] = trace.high_rate
    out[f"{k}_steady_s"] = trace.step_down - trace.steady_from
    out[f"{k}_cpu_per_request_ms"] = round(trace.cpu_per_request_s * 1000, 2)
    out[f"{k}_failure_kinds_dict"] = dict(trace.failure_kinds)
    out[f"{k}_goals_met_dict"] = goals(trace, mine)
    return out, typical


def goals(trace: Trace, f: dict[str, Any]) -> dict[str, bool]:
    def within(value: float | None, limit: float) -> bool:
        return value is not None and value <= limit

    return {
        "decision": within(f["decision_s"], GOAL_DECISION_S),
        "serving": within(f["serving_s"], GOAL_SERVING_S),
        "steady": f["steady_changes_count"] == GOAL_STEADY_CHANGES,
        "scale_down": within(f["scale_down_start_s"], trace.window_s + GOAL_DOWN_MARGIN_S),
        "failed": f["failed_requests_count"] == 0,
    }


def _s(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f} s"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def _range(r: Sequence[float] | None, unit: str = " s", digits: int = 0) -> str:
    return "" if not r else f" ({r[0]:.{digits}f}-{r[1]:.{digits}f}{unit})"


def table(trace: Trace, f: dict[str, Any]) -> str:
    k = trace.key
    g = f[f"{k}_goals_met_dict"]

    def row(name: str, mine: str, goal: str, met: bool | None, hpa: str) -> str:
        mark = "" if met is None else ("ok" if met else "MISSED")
        return f"  {name:38}{mine:>14}  {goal:>11} {mark:6}  {hpa}"

    def hpa(name: str) -> str:
        value, spread = f[f"hpa_{k}_{name}"], f[f"hpa_{k}_{range_key(name)}"]
        return "-" if value is None else f"{value:.1f} s{_range(spread)}"

    window = trace.window_s
    lines = [
        f"{trace.target_name} target {f[f'{k}_target_text']} per replica (cpus limit "
        f"{trace.cpus:g}), min {trace.min}, max {trace.max}, scale-down window {window:g} s; "
        f"load {trace.low_rate:g} -> {trace.high_rate:g} -> {trace.low_rate:g} req/s "
        f"({f[f'{k}_cpu_per_request_ms']:g} ms of cpu each), {f[f'{k}_steady_s']:.0f} s steady",
        f"  {'figure':38}{'podium':>14}  {'goal':>11} {'':6}  hpa defaults, same trace "
        "(median, range over phases)",
        row("load step -> decision", _s(f[f"{k}_decision_s"]), f"<= {GOAL_DECISION_S:g} s",
            g["decision"], hpa("decision_s")),
        row("  average over target -> decision", _s(f[f"{k}_crossing_to_decision_s"]), "",
            None, ""),
        row("decision -> new replicas serving", _s(f[f"{k}_serving_s"]),
            f"<= {GOAL_SERVING_S:g} s", g["serving"],
            f"{f[f'hpa_{k}_serving_s']:.1f} s (podium's, assumed)"),
        row(f"load step -> enough replicas ({needed(trace)})", _s(f[f"{k}_enough_replicas_s"]),
            "", None, hpa("enough_replicas_s")),
        row(f"changes in {f[f'{k}_steady_s']:.0f} s of steady load",
            str(f[f"{k}_steady_changes_count"]), "0", g["steady"],
            f"{f[f'hpa_{k}_steady_changes_count']:g}"
            f"{_range(f[f'hpa_{k}_steady_changes_range_count'], '')}"),
        row("load drop -> scale-down start", _s(f[f"{k}_scale_down_start_s"]),
            f"<= {window + GOAL_DOWN_MARGIN_S:g} s", g["scale_down"], hpa("scale_down_start_s")),
        row("load drop -> back to the low count", _s(f[f"{k}_scale_down_done_s"]), "", None,
            hpa("scale_down_done_s")),
        row("failed requests", f"{f[f'{k}_failed_requests_count']} of "
            f"{f[f'{k}_requests_count']}", "0", g["failed"], ""),
        f"  steady phase: average {_pct(f[f'{k}_steady_of_target_ratio'])} of the target, "
        f"demand {_num(f[f'{k}_steady_demand_in_targets_ratio'])} targets, per-second total "
        f"+-{_pct(f[f'{k}_steady_noise_ratio'])} (standard deviation), cpu per request "
        f"{_range(f[f'{k}_steady_cpu_per_request_range_ms'], ' ms', 1)[2:-1]} (per 30 s)",
        f"  count over time: {f[f'{k}_count_over_time_text']}",
        f"  hpa count over time (median phase): {f[f'hpa_{k}_count_over_time_text']}",
        "  the HPA model's load has no noise: its changes in the steady phase are its step "
        "response (a scale-up still going on, or an overshoot undone after 300 s)",
        "  replay of the recorded figures through podium.manager.scaling, per scale-down window "
        "(changes in the steady phase, scale-down start; -: none in the recorded "
        f"{trace.end - trace.step_down:.0f} s after the drop):",
    ]
    for average in REPLAY_AVERAGES_S:
        lines.append(f"    figures {'as read' if average == 1 else f'{average} s mean'}: "
                     + "; ".join(
                         f"{w} s: {r[f'steady_changes_{average}s_mean_count']}, "
                         f"{_s(r[f'scale_down_start_{average}s_mean_s'])}"
                         for w, r in f[f"{k}_replay_by_window_dict"].items()))
    if f[f"{k}_failure_kinds_dict"]:
        lines.append(f"  failures: {f[f'{k}_failure_kinds_dict']}")
    return "\n".join(lines)


def chart(trace: Trace, model: _hpa.HpaRun, f: dict[str, Any]) -> _plot.Canvas:
    """The count, ready replicas, the HPA model's count, the figure scaled on (its total over the
    target: the count the formula asks for) and the load over time."""
    end = trace.end
    # The count from the decisions (exact times), the rest from the per-second samples.
    first = trace.samples[0].replicas if trace.samples else trace.min
    count = [(0.0, float(first))] + [(d.t, float(d.after)) for d in trace.decisions
                                     if d.t <= end] + [(end, float(trace.decisions[-1].after
                                                               if trace.decisions else first))]
    ready = [(s.t, float(s.ready)) for s in trace.samples]
    hpa = [(float(t), float(c)) for t, c in enumerate(model.counts) if t <= end]
    load = [(s.t, s.served_per_s) for s in trace.samples]
    asked = [(0.0, trace.low_rate), (trace.step_up, trace.low_rate),
             (trace.step_up, trace.high_rate), (trace.step_down, trace.high_rate),
             (trace.step_down, trace.low_rate), (end, trace.low_rate)]
    # The figure the manager scales on, as the count it asks for (total / target).
    needs = [(s.t, s.total / trace.target) for s in trace.samples]
    series = [
        _plot.Series("total/target", needs, _plot.PURPLE),
        _plot.Series("req/s asked", asked, _plot.ORANGE, axis="right"),
        _plot.Series("req/s served", load, _plot.RED, axis="right"),
        _plot.Series("hpa count", hpa, _plot.GREEN, step=True),
        _plot.Series("ready", ready, _plot.GREY, step=True),
        _plot.Series("count", count, _plot.BLUE, step=True),
    ]
    title = f"{trace.key} {f[f'{trace.key}_target_text']}"
    return _plot.chart(series, title=title, left_unit="replicas", right_unit="req/s",
                       marks=[(trace.step_up, "x4"), (trace.steady_from, "steady"),
                              (trace.step_down, "/4")])
