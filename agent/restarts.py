"""Restart decisions for one task, pure: the restart policy, the count of restarts, and the
backoff between them. The clock is an argument.

- condition `none` never restarts; `on-failure` restarts only a non-zero exit or an unhealthy
  container; `any` (the default) restarts every stop the manager did not ask for.
- `max_attempts` counts restarts within `window` (or the task's whole life), together with the
  slot's earlier attempts the manager made (the task's `attempt`).
- Consecutive failures back off as podium.rules.restart says (the manager's replacements follow
  the same schedule): the first restart waits `delay` (default none), later ones double from
  max(delay, 0.5 s) up to 5 minutes. A container that ran for `reset_after` seconds starts the
  streak over.
- After `replace_after` consecutive failures the agent gives up on the task so the manager
  replaces it, preferably on another node.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from podium.rules.restart import REPLACE_AFTER, RESET_AFTER_S, attempts_exhausted, backoff
from podium.v1 import objects

__all__ = ["REPLACE_AFTER", "RestartBook", "Verdict"]

ANY = objects.RestartPolicy.CONDITION_ANY
ON_FAILURE = objects.RestartPolicy.CONDITION_ON_FAILURE
NONE = objects.RestartPolicy.CONDITION_NONE


@dataclass(slots=True, frozen=True)
class Verdict:
    restart: bool
    delay: float = 0.0
    # Why not, when restart is False.
    reason: str = ""


def _seconds(d: object) -> float:
    return float(d.ToNanoseconds()) / 1e9  # type: ignore[attr-defined]


@dataclass(slots=True)
class RestartBook:
    policy: objects.RestartPolicy
    # Attempts the manager already made in this slot before this task.
    prior_attempts: int = 0
    restarts: int = 0
    streak: int = 0
    times: deque[float] = field(default_factory=deque)
    reset_after: float = RESET_AFTER_S
    replace_after: int = REPLACE_AFTER

    def backoff(self, streak: int) -> float:
        """Delay before the restart that follows `streak` consecutive failures."""
        return backoff(streak, _seconds(self.policy.delay))

    def decide(self, *, failed: bool, ran_for: float, now: float) -> Verdict:
        """Whether to restart a container that stopped on its own (`failed`: non-zero exit,
        out of memory or unhealthy), after running for `ran_for` seconds."""
        condition = self.policy.condition
        if condition == NONE:
            return Verdict(False, reason="restart condition is none")
        if condition == ON_FAILURE and not failed:
            return Verdict(False, reason="exited 0 and the restart condition is on-failure")
        streak = 1 if ran_for >= self.reset_after else self.streak + 1
        window = _seconds(self.policy.window)
        while window and self.times and now - self.times[0] > window:
            self.times.popleft()
        attempts = self.prior_attempts + len(self.times)
        if attempts_exhausted(attempts, self.policy.max_attempts):
            return Verdict(False, reason=f"max_attempts ({self.policy.max_attempts}) reached")
        if streak > self.replace_after:
            return Verdict(False, reason=f"failed {streak - 1} times in a row on this node")
        return Verdict(True, delay=self.backoff(streak))

    def record(self, *, ran_for: float, now: float) -> None:
        """A restart is about to happen."""
        self.streak = 1 if ran_for >= self.reset_after else self.streak + 1
        self.restarts += 1
        self.times.append(now)
