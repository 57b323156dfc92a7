"""Restart backoff and max_attempts: the agent (restarts in place) and the manager (replacements)
follow one schedule and stop at the same count."""

from __future__ import annotations

import time

import pytest

from podium.agent.restarts import RestartBook
from podium.manager import ids
from podium.manager.orchestrator import may_replace, restart_delay
from podium.rules.restart import MAX_DELAY_S, backoff
from podium.v1 import objects


def test_the_schedule() -> None:
    assert [backoff(n) for n in range(5)] == [0.0, 0.0, 1.0, 2.0, 4.0]
    assert [backoff(n, 3.0) for n in range(1, 4)] == [3.0, 6.0, 12.0]
    assert backoff(1000) == MAX_DELAY_S


@pytest.mark.parametrize("delay", [0.0, 0.2, 3.0])
def test_a_replacement_continues_the_agents_schedule(delay: float) -> None:
    policy = objects.RestartPolicy()
    policy.delay.FromMilliseconds(int(delay * 1000))
    agent = RestartBook(policy=policy)
    for failures in range(1, 12):
        # The manager's attempt-th replacement follows attempt + 1 failures, as the agent's
        # restart after that many would.
        assert restart_delay(failures - 1, delay) == (agent.backoff(failures) if failures > 1
                                                      else 0.0)


@pytest.mark.parametrize("max_attempts", [1, 2, 4])
def test_agent_and_manager_stop_at_the_same_count(max_attempts: int) -> None:
    policy = objects.RestartPolicy(max_attempts=max_attempts)
    for prior in range(0, max_attempts + 2):
        agent = RestartBook(policy=policy, prior_attempts=prior)
        agent_may = agent.decide(failed=True, ran_for=0.1, now=0.0).restart
        task = objects.Task(attempt=prior)
        task.spec.restart_policy.CopyFrom(policy)
        task.status.state = objects.TASK_STATE_FAILED
        task.meta.created.CopyFrom(ids.timestamp(time.time() - 1))
        task.status.timestamp.CopyFrom(ids.timestamp())
        assert may_replace(task) == agent_may, (prior, max_attempts)
