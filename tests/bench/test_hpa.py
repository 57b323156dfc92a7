"""bench/_hpa.py, the model of the Kubernetes HPA's defaults the autoscaling bench compares with:
its replica calculator's rules (tolerance, missing and not-ready pods), a first reaction that
waits for the scrape and the sync, the scale-up limit per period and the 300 s scale-down window."""

from __future__ import annotations

import pytest

from bench._hpa import HpaSettings, Workload, desired_count, simulate, simulate_phases


def test_the_replica_calculator_follows_the_hpas_rules() -> None:
    # Within the tolerance: no change; else ceil(ratio x pods).
    assert desired_count([1.05, 1.05], 0, 0, 2, target=1.0, tolerance=0.1) == 2
    assert desired_count([1.5] * 4, 0, 0, 4, target=1.0, tolerance=0.1) == 6
    assert desired_count([0.5] * 4, 0, 0, 4, target=1.0, tolerance=0.1) == 2
    # Scaling up, missing and not-ready pods count as 0: 2 x 2.0 over 4 pods is the target.
    assert desired_count([2.0, 2.0], 1, 1, 4, target=1.0, tolerance=0.1) == 4
    assert desired_count([3.0, 3.0], 1, 1, 4, target=1.0, tolerance=0.1) == 6
    # Scaling down, missing pods count at the target (100 %); not-ready ones are left out.
    assert desired_count([0.2, 0.2], 2, 0, 4, target=1.0, tolerance=0.1) == 3
    assert desired_count([0.2, 0.2], 0, 2, 4, target=1.0, tolerance=0.1) == 1
    # No figures at all: no change.
    assert desired_count([], 3, 0, 3, target=1.0, tolerance=0.1) == 3


def step_workload(**kw: float) -> Workload:
    """2 pods at half the target until second 20, then 8x that demand until 400, then back."""
    demand = [1.0] * 20 + [8.0] * 380 + [1.0] * 700
    return Workload(demand=demand, capacity=1e9, target=1.0, min=2, max=10, start=2,
                    start_s=kw.get("start_s", 2.0))


def test_the_first_reaction_waits_for_a_scrape_whose_window_shows_the_step_and_a_sync() -> None:
    run = simulate(step_workload(), HpaSettings(window_s=30), scrape_phase=0, sync_phase=0)
    # Second 30's scrape averages [0, 30): 20 s at 0.5 and 10 s at 4 per pod, 1.67 x the
    # target; the sync at 30 asks for ceil(1.67 x 2) = 4.
    assert run.decisions[0] == (30.0, 2, 4)
    # Later syncs: never more than max(4 pods, 100 %) per 15 s.
    for (t0, _, a), (t1, _, b) in zip(run.decisions, run.decisions[1:], strict=False):
        if b > a and t1 - t0 < 15:
            assert b <= max(a + 4, 2 * a)
    assert max(run.counts[:400]) == 8
    assert run.ready[31] == 2 and run.ready[32] == 4  # serving start_s after the decision


def test_scale_down_waits_for_the_300_s_window_and_scale_up_is_limited_per_period() -> None:
    run = simulate(step_workload(), HpaSettings(window_s=30), scrape_phase=0, sync_phase=0)
    downs = [d for d in run.decisions if d[2] < d[1]]
    last_high = max(t for t, a, b in run.decisions if b > a)
    assert downs and downs[0][0] >= 400 + 15  # the figures show the drop a scrape later
    assert downs[0][0] - max(last_high, 400) >= 300 - 15
    assert run.counts[-1] == 2

    jump = Workload(demand=[1.0] * 5 + [40.0] * 100, capacity=1e9, target=1.0, min=2, max=30,
                    start=2, start_s=1.0)
    first = simulate(jump, HpaSettings(window_s=15, first_metric_s=15), scrape_phase=0,
                     sync_phase=0).decisions[0]
    assert first[1:] == (2, 6)  # ceil(ratio x 2) is far more; the policy allows 2 + 4


def test_every_phase_is_run_and_bad_arguments_are_refused() -> None:
    runs = simulate_phases(step_workload(), [HpaSettings(), HpaSettings(window_s=60)])
    assert len(runs) == 2 * 15 * 15
    firsts = {r.decisions[0][0] - 20 for r in runs}
    assert min(firsts) > 0 and max(firsts) <= 15 + 15 + 30
    with pytest.raises(ValueError, match="phases"):
        simulate(step_workload(), scrape_phase=15)
