"""bench/_updatereport.py, the update bench's figures and table, on a made-up run: the goals are
judged on the scenarios (a)-(d) only, never on the naive baseline, and every figure's key ends in
its unit."""

from __future__ import annotations

import argparse
import json
from typing import Any

from bench._updatereport import MODES, Run, Scenario, figures, table
from podium.rules import update as rules
from podium.v1 import objects

ARGS = argparse.Namespace(replicas=6, rate=700.0, timeout=2.0, probe_interval=0.25)
UNITS = ("_s", "_count", "_ratio", "_text", "_dict", "_per_s")


def phase(name: str, sent: int, failed: int = 0) -> dict[str, Any]:
    return {"phase": name, "sent_count": sent, "ok_count": sent - failed, "failed_count": failed,
            "skipped_count": 0, "retried_closed_keepalive_count": 0, "reused_count": 0,
            "server_close_count": sent - failed, "achieved_rate_per_s": 700.0,
            "latency_p99_ms": 5.0, "late_start_max_ms": 20.0,
            "failure_kinds": {"timeout": failed} if failed else {},
            "failure_samples": [[1.0, "10.0.0.1:8080", "no answer within 2 s"]] * min(failed, 1)}


def made_up_run(*, good_failed: int, naive_failed: int,
                good_replaced_s: float) -> tuple[Run, dict[str, Any]]:
    plan = rules.plan(objects.ServiceSpec())
    run = Run(plan, rules.plan(objects.ServiceSpec(), rollback=True),
              calibration=[(0.4, 0.7), (0.5, 0.8), (0.6, 0.9)],
              cpu_start=(100, 1000), cpu_end=(600, 2000), load=(1.0, 2.0))
    for key, replaced in (("good_update", good_replaced_s), ("bad_update", 1.2),
                          ("manual_rollback", 5.0), ("canary", 5.5), ("naive_update", 1.0)):
        scenario = Scenario(key, key.replace("_", " "), floor_s=4.8, own_floor_s=4.9,
                            monitor_s=5.0, batches=6, state="COMPLETED", versions="1 -> 2")
        scenario.add(seconds=replaced + 5.0, replaced_s=replaced, min_ready=6)
        run.scenarios.append(scenario)
    run.scenarios[1].extra["detection_s"] = 0.7
    results = {mode: {"phases": [
        phase("warmup", 2800), phase("calibration", 5000),
        phase("good_update", 14_000, good_failed), phase("bad_update", 8000),
        phase("manual_rollback", 14_000), phase("canary", 18_000),
        phase("naive_update", 10_000, naive_failed)]} for mode in MODES}
    return run, results


def test_goals_count_the_scenarios_and_leave_the_naive_baseline_out() -> None:
    run, results = made_up_run(good_failed=0, naive_failed=1200, good_replaced_s=6.0)
    f = figures(ARGS, run, results, wall=100.0)
    assert f["requests_count"] == 2 * (14_000 + 8000 + 14_000 + 18_000)
    assert f["failed_requests_count"] == 0
    assert f["naive_update_failed_requests_count"] == 2400
    assert f["detection_s"] == 0.7
    assert f["task_start_health_s"] == 0.8
    assert f["machine_busy_ratio"] == 0.5
    text = table(ARGS, run, f)
    assert "failed requests over (a)-(d): 0 of 108,000 (goal 0 of >= 100,000: met)" in text
    assert "stop-first all at once: 2,400 failed of 20,000" in text
    assert "worst 1.25x, good update (met)" in text
    for key in f:
        assert key.endswith(UNITS), key
    json.dumps(f)


def test_a_failed_request_or_a_slow_scenario_misses_its_goal_and_shows_why() -> None:
    run, results = made_up_run(good_failed=3, naive_failed=0, good_replaced_s=8.0)
    f = figures(ARGS, run, results, wall=100.0)
    assert f["failed_requests_count"] == 6
    text = table(ARGS, run, f)
    assert "(goal 0 of >= 100,000: NOT met)" in text
    assert "worst 1.67x, good update (NOT met)" in text
    assert "good update, new: {'timeout': 3}" in text
