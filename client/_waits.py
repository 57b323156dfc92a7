"""How the `podium` commands that change services wait for the change to take effect.

One loop (`wait_for`) serves deploy, scale, rollback and promote. Each service has a `Goal`:
- convergence (a created or scaled service): its live tasks all run its current version;
- an update to a version (deploy, promote): it ends well when the update is COMPLETED, or, for
  a deploy, when its canaries are healthy (CANARY: the user promotes or rolls back later); it
  fails when the service ends ROLLED_BACK, PAUSED or ROLLBACK_PAUSED;
- a rollback (`podium rollback`): it ends well when the service is ROLLED_BACK with `manual`
  set, and fails when the rollback pauses.

The loop prints one line per service whenever that line changes (never the same line twice in
a row), rereads every service at each change the manager reports (Changes), and after
`timeout` seconds fails naming the services still on their way. Every service is looked at
until none is on its way: a service that completed may still be rolled back because another
service of the same deploy failed. Exit status: 0 when every goal ended well, else 1; the
reason of each failure goes to stderr (`error: web: web.2 unhealthy: exit code 1; rolled back
to version 3`).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from podium.client import views
from podium.client._api import Client, PodiumError
from podium.rules import autoscale
from podium.rules.taskstate import has_finished, is_live
from podium.v1 import objects

RUNNING = objects.TASK_STATE_RUNNING
PENDING = objects.TASK_STATE_PENDING
US = objects.UpdateStatus
# A rollback's states: a status in one of them goes *from* the version it names first.
ROLLBACK_STATES = (US.STATE_ROLLING_BACK, US.STATE_ROLLED_BACK, US.STATE_ROLLBACK_PAUSED)
FAILED_STATES = (US.STATE_ROLLED_BACK, US.STATE_PAUSED, US.STATE_ROLLBACK_PAUSED)

# Verdicts on one service.
WAIT, OK, CANARY, FAILED = "wait", "ok", "canary", "failed"


class Changes:
    """Wakes a waiting command as soon as the manager reports a change: its event stream is
    read on a thread, and `wait(timeout)` returns at the next event (or after `timeout`).
    Without the stream (an error, an older manager) it waits at most POLL seconds: polling."""

    POLL = 0.1

    def __init__(self, client: Client, kinds: list[str]) -> None:
        self._changed = threading.Event()
        self._events = client.events(kinds)
        self._thread = threading.Thread(target=self._follow, name="changes", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        with contextlib.suppress(PodiumError):
            for _ in self._events:
                self._changed.set()

    def wait(self, timeout: float) -> None:
        """Returns at the next change since the last wait, or after `timeout` seconds."""
        self._changed.wait(timeout if self._thread.is_alive() else min(timeout, self.POLL))
        self._changed.clear()

    def close(self) -> None:
        self._events.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Changes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class Goal:
    """What the wait for one service ends on. `version` 0: convergence only."""

    name: str
    # The version the update goes to, or (a rollback) goes back to.
    version: int = 0
    # A manual rollback: the version it leaves (0: not a rollback).
    rollback_from: int = 0
    # Canaries waiting to be promoted do not end it (`podium promote` waits for the rest).
    promote: bool = False


def converged(service: objects.Service, tasks: Sequence[objects.Task]) -> tuple[bool, str]:
    """Whether a service runs as its spec says, and a progress line."""
    name = service.spec.name
    live = [t for t in tasks if is_live(t) and not t.canary]
    current = [t for t in live if t.spec_version == service.spec_version]
    running = [t for t in current if t.status.state == RUNNING]
    stopping = [t for t in tasks if not is_live(t) and not has_finished(t)]
    glob = service.spec.mode == objects.ServiceSpec.MODE_GLOBAL
    desired = len(live) if glob else service.spec.replicas
    done = len(running) == desired == len(live) and not stopping
    line = f"{name}: {len(running)}/{desired} running"
    if stopping:
        line += f", {len(stopping)} stopping"
    waiting = [t for t in live if t.status.state != RUNNING]
    if waiting:
        t = waiting[0]
        why = t.status.err or t.status.message
        line += f" ({views.task_state(t.status.state)}: {why})" if why else ""
    full = service.autoscale_status.at_capacity
    if (not done and full and autoscale.enabled(service.spec) and not stopping
            and len(current) == len(live) == desired
            and all(t.status.state in (RUNNING, PENDING) for t in live)
            and len(running) >= service.spec.autoscale.min):
        # The autoscaler wants more than fits: what can run does; the rest waits for room.
        return True, f"{name}: {len(running)}/{desired} running, at capacity ({full})"
    return done, line


def _ours(status: objects.UpdateStatus, goal: Goal) -> bool:
    """Whether the service's update status is about the change `goal` waits for."""
    if goal.rollback_from:
        return (status.manual and status.from_version == goal.rollback_from
                and status.to_version == goal.version)
    if status.state == US.STATE_NONE:
        return False
    # An update to the version, or the rollback of it (after a failure, or with the other
    # services of its deploy).
    return status.to_version == goal.version or (
        status.from_version == goal.version and status.state in ROLLBACK_STATES)


def _verdict(status: objects.UpdateStatus, goal: Goal) -> str:
    state = status.state
    if goal.rollback_from:
        if state == US.STATE_ROLLED_BACK:
            return OK
        return FAILED if state in (US.STATE_PAUSED, US.STATE_ROLLBACK_PAUSED) else WAIT
    if state == US.STATE_COMPLETED:
        return OK
    if state == US.STATE_CANARY:
        return WAIT if goal.promote else CANARY
    return FAILED if state in FAILED_STATES else WAIT


def progress(service: objects.Service, tasks: Sequence[objects.Task],
             goal: Goal) -> tuple[str, str]:
    """(verdict, line) for one service."""
    status = service.update_status
    if goal.version and _ours(status, goal):
        text = status.message or views.update_text(service, tasks)
        return _verdict(status, goal), f"{goal.name}: {text}"
    done, line = converged(service, tasks)
    if goal.version and service.spec_version != goal.version:
        # Another deploy or rollback took the service elsewhere before this change was seen.
        why = f" ({status.message})" if status.message else ""
        return FAILED, (f"{goal.name}: version {goal.version} was replaced by version "
                        f"{service.spec_version}{why}")
    # Convergence, or an update no status reports (a manager without updates): the same.
    return (OK if done else WAIT), line


def wait_for(client: Client, goals: Sequence[Goal], timeout: float) -> int:
    with Changes(client, ["service", "task"]) as changes:
        return _wait_for(client, goals, timeout, changes)


def _wait_for(client: Client, goals: Sequence[Goal], timeout: float, changes: Changes) -> int:
    deadline = time.monotonic() + timeout
    shown: dict[str, str] = {}
    verdicts: dict[str, str] = {}
    while True:
        for goal in goals:
            if not goal.version and verdicts.get(goal.name) == OK:
                continue  # a service that converged once counts as converged
            service = client.service(goal.name)
            verdict, line = progress(service, client.tasks(service=service.id), goal)
            if line != shown.get(goal.name):
                print(line, flush=True)
                shown[goal.name] = line
            verdicts[goal.name] = verdict
        if WAIT not in verdicts.values():
            break
        if time.monotonic() > deadline:
            for goal in goals:
                if verdicts[goal.name] == FAILED:
                    print(f"error: {shown[goal.name]}", file=sys.stderr)
                elif verdicts[goal.name] == WAIT and not goal.version:
                    print(f"error: {goal.name} did not converge within {timeout:g} s: "
                          f"{shown[goal.name]}", file=sys.stderr)
                elif verdicts[goal.name] == WAIT:
                    print(f"error: {goal.name} not done within {timeout:g} s: "
                          f"{shown[goal.name]} (it goes on: `podium services` shows where "
                          "it stands)", file=sys.stderr)
            return 1
        # Looked at again at the next change (every 1 s regardless, should one be missed).
        changes.wait(min(1.0, max(0.0, deadline - time.monotonic())))
    failed = [goal for goal in goals if verdicts[goal.name] == FAILED]
    for goal in failed:
        print(f"error: {shown[goal.name]}", file=sys.stderr)
    if failed:
        return 1
    canaries = [goal for goal in goals if verdicts[goal.name] == CANARY]
    for goal in canaries:
        print(f"{goal.name}: the canaries of version {goal.version} are healthy: "
              f"`podium promote {goal.name}` updates the other tasks, "
              f"`podium rollback {goal.name}` removes the canaries", flush=True)
    if not canaries:
        print("converged")
    return 0


def wait_converged(client: Client, names: list[str], timeout: float) -> int:
    """Waits until each service converged (scale, drain, a created service)."""
    return wait_for(client, [Goal(name) for name in names], timeout)
