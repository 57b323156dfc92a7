"""Predicates on a task's desired state and observed status, shared by the manager's loops
and the CLI so that "live", "finished" and "pending" mean one thing everywhere."""

from __future__ import annotations

from podium.v1 import objects

RUNNING = objects.TASK_STATE_RUNNING


def is_live(task: objects.Task) -> bool:
    """The manager still wants the task to run (it has not ended it)."""
    return task.desired_state <= RUNNING


def has_finished(task: objects.Task) -> bool:
    """The task's container exited, failed, was stopped or removed."""
    return task.status.state > RUNNING


def is_pending(task: objects.Task) -> bool:
    """Waiting for the scheduler to place it."""
    return task.status.state == objects.TASK_STATE_PENDING and is_live(task)


def holds_resources(task: objects.Task) -> bool:
    """Placed on a node and neither ended nor finished: it counts against the node."""
    return bool(task.node_id) and is_live(task) and not has_finished(task)
