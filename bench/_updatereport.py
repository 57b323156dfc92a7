"""The update bench's figures and table (bench/update.py runs the scenarios): one record per
scenario, its requests and failures per traffic mode from the load generators' phases, its times
next to its floor, and the goals of issue 10 checked against them."""

from __future__ import annotations

import argparse
import os
import statistics
from dataclasses import dataclass, field
from typing import Any

from podium.lab.local import IMAGE
from podium.rules import update as rules

MODES = ("new", "keepalive")  # the load generators: a new connection per request, keep-alive
SERVICE = "web"
PORT = 8080
HEALTH_PATH = "/healthz"
PROBE_RETRIES = 3
GOAL_REQUESTS = 100_000
GOAL_RATIO = 1.5
GOAL_DETECTION_MARGIN_S = 1.0


@dataclass(slots=True)
class Scenario:
    key: str  # JSON key stem: good_update, bad_update, manual_rollback, canary, naive_update
    title: str
    seconds: float = 0.0  # the call(s) -> the terminal state
    replaced_s: float = 0.0  # the call(s) -> every slot on the target version and healthy
    floor_s: float = 0.0
    own_floor_s: float = 0.0  # from its own new tasks' times (bench/update.py Bench.finish)
    monitor_s: float = 0.0  # the window the updater watches the last new task before the end
    batches: int = 0
    state: str = ""
    message: str = ""
    versions: str = ""
    min_ready: int = 1 << 30
    task_ready_s: list[float] = field(default_factory=list)  # its new tasks: created -> healthy
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, *, seconds: float, replaced_s: float, min_ready: int) -> None:
        """One watched update of the scenario (a canary and its promotion are two)."""
        self.seconds += seconds
        self.replaced_s += replaced_s
        self.min_ready = min(self.min_ready, min_ready)


@dataclass(slots=True)
class Run:
    """What the scenarios measured, for the report."""

    plan: rules.Plan
    rollback_plan: rules.Plan
    # One task's (created -> running, created -> healthy), per calibration trial.
    calibration: list[tuple[float, float]] = field(default_factory=list)
    scenarios: list[Scenario] = field(default_factory=list)
    # The machine's cpu time (busy, total) from /proc/stat when the traffic started and ended,
    # and its 1-minute load average then: other work on a shared machine shows here.
    cpu_start: tuple[int, int] = (0, 0)
    cpu_end: tuple[int, int] = (0, 0)
    load: tuple[float, float] = (0.0, 0.0)
    # Traffic phase -> times a replica's accept queue overflowed (bench/_backlog.py).
    listen_overflows: dict[str, int] = field(default_factory=dict)

    @property
    def task_s(self) -> float:
        """One task's start + health time: the median of the trials."""
        return statistics.median(h for _, h in self.calibration)

    @property
    def start_s(self) -> float:
        return statistics.median(r for r, _ in self.calibration)


def phase_of(results: dict[str, Any], mode: str, name: str) -> dict[str, Any]:
    return next((p for p in results[mode]["phases"] if p["phase"] == name), {})


def ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 2) if whole > 0 else None


def figures(args: argparse.Namespace, run: Run, results: dict[str, Any],
            wall: float) -> dict[str, Any]:
    """The run's figures, keys ending in their units; `results`: each generator's output."""
    plan, rollback_plan = run.plan, run.rollback_plan
    out: dict[str, Any] = {
        "replicas_count": args.replicas,
        "hosts_count": 3,
        "parallelism_count": plan.parallelism,
        "order_text": "start-first" if plan.start_first else "stop-first",
        "monitor_s": plan.monitor_s,
        "rollback_parallelism_count": rollback_plan.parallelism,
        "rollback_monitor_s": rollback_plan.monitor_s,
        "probe_interval_s": args.probe_interval,
        "probe_retries_count": PROBE_RETRIES,
        "rate_per_mode_per_s": args.rate,
        "request_timeout_s": args.timeout,
        "task_start_health_s": round(run.task_s, 3),
        "task_start_s": round(run.start_s, 3),
        "task_start_health_trials_s": [round(h, 3) for _, h in run.calibration],
    }
    sent = failed = 0
    for s in run.scenarios:
        per_mode = {m: phase_of(results, m, s.key) for m in MODES}
        s_sent = sum(p.get("sent_count", 0) for p in per_mode.values())
        s_failed = sum(p.get("failed_count", 0) + p.get("skipped_count", 0)
                       for p in per_mode.values())
        if s.key != "naive_update":
            sent += s_sent
            failed += s_failed
        k = s.key
        out |= {
            f"{k}_s": round(s.seconds, 3),
            f"{k}_replaced_s": round(s.replaced_s, 3),
            f"{k}_floor_s": round(s.floor_s, 3),
            f"{k}_own_tasks_floor_s": round(s.own_floor_s, 3) if s.own_floor_s else None,
            f"{k}_replaced_own_tasks_floor_ratio": ratio(s.replaced_s, s.own_floor_s),
            f"{k}_final_monitor_s": s.monitor_s,
            f"{k}_replaced_floor_ratio": ratio(s.replaced_s, s.floor_s),
            f"{k}_floor_ratio": ratio(s.seconds, s.floor_s),
            f"{k}_floor_and_monitor_ratio": ratio(s.seconds, s.floor_s + s.monitor_s),
            f"{k}_requests_count": s_sent,
            f"{k}_failed_requests_count": s_failed,
            f"{k}_min_ready_count": s.min_ready,
            f"{k}_listen_overflows_count": run.listen_overflows.get(k, 0),
            f"{k}_state_text": s.state,
            f"{k}_message_text": s.message,
            f"{k}_versions_text": s.versions,
            f"{k}_batches_count": s.batches,
            f"{k}_task_ready_s": [round(x, 3) for x in s.task_ready_s],
        }
        for key, value in s.extra.items():
            out[f"{k}_{key}"] = round(value, 3) if isinstance(value, float) else value
        out[f"{k}_traffic_dict"] = per_mode
    out["requests_count"] = sent
    out["failed_requests_count"] = failed
    out["detection_s"] = out.get("bad_update_detection_s")
    out["detection_goal_s"] = plan.monitor_s + GOAL_DETECTION_MARGIN_S
    for name in ("warmup", "calibration"):  # the traffic before the scenarios
        out[f"{name}_traffic_dict"] = {m: phase_of(results, m, name) for m in MODES}
        out[f"{name}_listen_overflows_count"] = run.listen_overflows.get(name, 0)
    busy, total = (e - s for s, e in zip(run.cpu_start, run.cpu_end, strict=True))
    out["machine_busy_ratio"] = round(busy / total, 2) if total else None
    out["machine_cpus_count"] = os.cpu_count()
    out["machine_load_start_count"], out["machine_load_end_count"] = run.load
    out["bench_wall_s"] = round(wall, 1)
    return out


def cpu_times() -> tuple[int, int]:
    """The machine's (busy, total) cpu time so far, in clock ticks, from /proc/stat."""
    with open("/proc/stat") as stat:
        ticks = [int(x) for x in stat.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return sum(ticks) - idle, sum(ticks)


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def table(args: argparse.Namespace, run: Run, f: dict[str, Any]) -> str:
    """The figures as people read them."""
    lines = [
        f"update bench: 3 simulated hosts, {args.replicas} replicas of {SERVICE} ({IMAGE}), "
        f"ingress port {PORT} reached through h1, h2 and h3",
        f"update settings: parallelism {f['parallelism_count']}, order {f['order_text']}, "
        f"monitor {f['monitor_s']:g} s, failure action rollback; rollback: parallelism "
        f"{f['rollback_parallelism_count']}, monitor {f['rollback_monitor_s']:g} s; readiness: "
        f"GET {HEALTH_PATH} every {args.probe_interval:g} s, {PROBE_RETRIES} retries",
        f"one task's start + health time: {f['task_start_health_s']:.2f} s (created -> healthy, "
        f"median of {', '.join(f'{x:.2f}' for x in f['task_start_health_trials_s'])}); "
        f"start alone {f['task_start_s']:.2f} s",
    ]
    for mode, label in (("new", "new connection per request"), ("keepalive", "keep-alive")):
        phases = [f[f"{s.key}_traffic_dict"][mode] for s in run.scenarios]
        rates = [p["achieved_rate_per_s"] for p in phases if p.get("achieved_rate_per_s")]
        late = max((p.get("late_start_max_ms") or 0 for p in phases), default=0)
        p99 = max((p.get("latency_p99_ms") or 0 for p in phases), default=0)
        slow = sum(p.get("answered_in_1s_or_more_count", 0) for p in phases)
        lines.append(f"traffic, {label}: {args.rate:g}/s asked, achieved "
                     f"{min(rates, default=0):.0f}-{max(rates, default=0):.0f}/s per scenario, "
                     f"latest start {late:.0f} ms behind schedule; latency p99 <= {p99:.0f} ms, "
                     f"{slow:,} answered in 1 s or more")
    ka = [f[f"{s.key}_traffic_dict"]["keepalive"] for s in run.scenarios]
    lines.append(
        "keep-alive: the server announced `Connection: close` on "
        f"{sum(p.get('server_close_count', 0) for p in ka):,} of "
        f"{sum(p.get('ok_count', 0) for p in ka):,} answers; "
        f"{sum(p.get('reused_count', 0) for p in ka):,} requests went on a reused connection, "
        f"{sum(p.get('retried_closed_keepalive_count', 0) for p in ka):,} were retried on a "
        "closed keep-alive connection")
    overflows = sum(f[f"{s.key}_listen_overflows_count"] for s in run.scenarios)
    lines.append(f"the replicas' accept queues overflowed {overflows:,} times during the scenarios "
                 "(busybox httpd listens with a backlog of 9; a dropped SYN is sent again 1 s "
                 "later): column 1s/ovf")
    lines += ["", f"{'scenario':34}{'requests':>9}{'failed':>7}{'(new/ka)':>12}{'p99 ms':>7}"
              f"{'1s/ovf':>8}"
              f"{'time s':>8}{'replaced':>9}{'floor s':>8}{'ratio':>6}{'own s':>7}{'ratio':>6}"
              f"{'min ready':>10}  result"]
    for s in run.scenarios:
        k = s.key
        per = f[f"{k}_traffic_dict"]
        split = "/".join(str(per[m].get("failed_count", 0)) for m in MODES)
        r, own = f[f"{k}_replaced_floor_ratio"], f[f"{k}_replaced_own_tasks_floor_ratio"]
        p99 = max(per[m].get("latency_p99_ms") or 0 for m in MODES)
        slow = sum(per[m].get("answered_in_1s_or_more_count", 0) for m in MODES)
        slow_ovf = f"{slow}/{f[f'{k}_listen_overflows_count']}"
        lines.append(
            f"{s.title:34}{f[f'{k}_requests_count']:>9,}{f[f'{k}_failed_requests_count']:>7,}"
            f"{'(' + split + ')':>12}{p99:>7.0f}{slow_ovf:>8}{s.seconds:>8.2f}{s.replaced_s:>9.2f}"
            f"{s.floor_s:>8.2f}"
            f"{(f'{r:.2f}' if r else '-'):>6}"
            f"{(f'{s.own_floor_s:.2f}' if s.own_floor_s else '-'):>7}"
            f"{(f'{own:.2f}' if own else '-'):>6}{s.min_ready:>10}  {s.state} ({s.versions})")
    lines += ["", "time: from the call to the terminal state; replaced: to every slot on the "
              "target version and healthy, before the updater's final monitor window; floor: "
              "one task's start + health time x batches (b: start + retries x interval + the "
              "rollback's batches); own: the same from the scenario's own new tasks, batch by "
              "batch; ratio: replaced / floor, replaced / own; p99: latency of the answered "
              "requests; 1s/ovf: requests answered in 1 s or more / accept queue overflows"]
    extended = next((s.extra["tail_extended_s"] for s in run.scenarios
                     if s.extra.get("tail_extended_s")), None)
    if extended:
        lines.append(f"the last scenario's tail was lengthened by {extended:.1f} s to reach "
                     f"{GOAL_REQUESTS:,} requests")
    ok = f["failed_requests_count"] == 0 and f["requests_count"] >= GOAL_REQUESTS
    lines.append(f"failed requests over (a)-(d): {f['failed_requests_count']:,} of "
                 f"{f['requests_count']:,} (goal 0 of >= {GOAL_REQUESTS:,}: {_verdict(ok)})")
    if "naive_update_failed_requests_count" in f:
        lines.append("baseline, stop-first all at once: "
                     f"{f['naive_update_failed_requests_count']:,} failed of "
                     f"{f['naive_update_requests_count']:,}")
    goal = [s for s in run.scenarios if s.key != "naive_update" and s.floor_s]
    if goal:
        worst = max(goal, key=lambda s: s.replaced_s / s.floor_s)
        whole = max(goal, key=lambda s: s.seconds / (s.floor_s + s.monitor_s))
        literal = max(goal, key=lambda s: s.seconds / s.floor_s)
        worst_x = worst.replaced_s / worst.floor_s
        whole_x = whole.seconds / (whole.floor_s + whole.monitor_s)
        lines.append(
            f"replacement within {GOAL_RATIO:g}x its floor: worst {worst_x:.2f}x, {worst.title} "
            f"({_verdict(worst_x <= GOAL_RATIO)}); up to the terminal state: worst "
            f"{whole_x:.2f}x of floor + final monitor ({whole.title}: "
            f"{_verdict(whole_x <= GOAL_RATIO)}; no update can end sooner, as a new task that "
            f"turns unhealthy within its monitor still fails it), "
            f"{literal.seconds / literal.floor_s:.2f}x of the floor alone ({literal.title})")
    if f["detection_s"] is not None:
        det, limit = f["detection_s"], f["detection_goal_s"]
        after = f.get("bad_update_unhealthy_after_first_failed_check_s")
        verdict = f"; the agent's verdict (unhealthy) came {after:.2f} s after it" if after else ""
        lines.append(f"bad version detected {det:.2f} s after its first failed check (goal <= "
                     f"monitor + 1 s = {limit:g} s: {_verdict(det <= limit)}){verdict}")
    for s in run.scenarios:
        if s.task_ready_s:
            lines.append(f"{s.title}: its new tasks created -> healthy "
                         f"{', '.join(f'{x:.2f}' for x in s.task_ready_s)} s")
    for s in run.scenarios:
        for mode in MODES:
            p = f[f"{s.key}_traffic_dict"][mode]
            if p.get("failed_count") or p.get("skipped_count"):
                lines.append(f"{s.title}, {mode}: {p['failure_kinds']}, skipped "
                             f"{p['skipped_count']}, first: {p['failure_samples'][:2]}")
    lines.append(f"machine: {f['machine_cpus_count']} cpus, {f['machine_busy_ratio']:.0%} busy "
                 f"during the traffic (everything on it, this run included), load average "
                 f"{f['machine_load_start_count']:.1f} when the traffic started and "
                 f"{f['machine_load_end_count']:.1f} when it ended; bench wall time "
                 f"{f['bench_wall_s']:.0f} s")
    return "\n".join(lines)
