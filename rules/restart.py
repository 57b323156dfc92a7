"""Restart backoff: one schedule for the agent's restarts in place and the manager's replacements.

A task that keeps failing waits `first` (the restart policy's `delay`, default none) before its
first restart, then max(first, MIN_BACKOFF_S) doubling up to MAX_DELAY_S. A run of RESET_AFTER_S
(or the policy's `window`) starts the count over. After REPLACE_AFTER failures in a row on one
node the agent hands the task back and the manager replaces it, continuing the same schedule.
`max_attempts` bounds restarts and replacements together.
"""

from __future__ import annotations

MIN_BACKOFF_S = 0.5
MAX_DELAY_S = 300.0
RESET_AFTER_S = 60.0
REPLACE_AFTER = 5


def backoff(failures: int, first: float = 0.0) -> float:
    """Delay before the restart that follows `failures` consecutive failures."""
    if failures <= 0:
        return 0.0
    if failures == 1:
        return first
    return float(min(max(first, MIN_BACKOFF_S) * 2 ** min(failures - 1, 20), MAX_DELAY_S))


def attempts_exhausted(attempts: int, max_attempts: int) -> bool:
    """Whether `attempts` restarts and replacements used up `max_attempts` (0: unlimited)."""
    return bool(max_attempts) and attempts >= max_attempts
