"""Restart decisions, without an event loop."""

from __future__ import annotations

from podium.agent.restarts import REPLACE_AFTER, RestartBook
from podium.v1 import objects

P = objects.RestartPolicy


def book(**policy: object) -> RestartBook:
    p = objects.RestartPolicy()
    for key, value in policy.items():
        if key in ("delay", "window"):
            getattr(p, key).FromMilliseconds(int(float(value) * 1000))  # type: ignore[arg-type]
        else:
            setattr(p, key, value)
    return RestartBook(policy=p)


def run_failures(b: RestartBook, count: int, *, ran_for: float = 0.1) -> list[float]:
    delays, now = [], 0.0
    for _ in range(count):
        verdict = b.decide(failed=True, ran_for=ran_for, now=now)
        if not verdict.restart:
            break
        delays.append(verdict.delay)
        b.record(ran_for=ran_for, now=now)
        now += verdict.delay + ran_for
    return delays


def test_delays_grow_and_the_first_restart_is_immediate() -> None:
    assert run_failures(book(), 4) == [0.0, 1.0, 2.0, 4.0]
    assert run_failures(book(delay=3), 3) == [3.0, 6.0, 12.0]


def test_backoff_is_capped_at_five_minutes() -> None:
    b = book()
    assert b.backoff(40) == 300.0


def test_condition_none_and_on_failure() -> None:
    assert not book(condition=P.CONDITION_NONE).decide(failed=True, ran_for=1, now=0).restart
    on_failure = book(condition=P.CONDITION_ON_FAILURE)
    assert not on_failure.decide(failed=False, ran_for=1, now=0).restart
    assert on_failure.decide(failed=True, ran_for=1, now=0).restart
    assert book().decide(failed=False, ran_for=1, now=0).restart


def test_max_attempts_counts_prior_attempts_and_the_window() -> None:
    assert len(run_failures(book(max_attempts=2), 10)) == 2
    b = book(max_attempts=3)
    b.prior_attempts = 2
    assert len(run_failures(b, 10)) == 1
    # Within a 1 s window, restarts spaced over 4 s never pile up to 2.
    windowed = book(max_attempts=2, window=1, delay=2)
    assert len(run_failures(windowed, 4)) == 4


def test_a_long_run_resets_the_streak_and_a_crash_loop_is_handed_back() -> None:
    b = book()
    assert len(run_failures(b, 20)) == REPLACE_AFTER
    verdict = b.decide(failed=True, ran_for=120, now=1000)
    assert verdict.restart and verdict.delay == 0.0
