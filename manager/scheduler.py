"""Scheduler: places pending tasks on nodes.

The decisions come from the pure `placement.schedule()`; this loop only feeds
it a snapshot and commits its plan in one transaction, re-checking each task
and node against the current state (a plan made on a snapshot may be stale):
the task is still pending, the node still takes new tasks (eligibility.py) and
still has the cpu, memory and host ports free next to the tasks on it at commit
time (placement.NodeFit). A decision that fails the re-check is dropped: the
task stays PENDING and the change that made the plan stale wakes the next pass.
A task that fits nowhere stays PENDING with the reason in its status message.
When the store's revision shows nothing changed since the snapshot (the commit follows it with
no await, as on SQLite), the re-check is skipped. What the tasks on each node hold is kept from
the watch (placement.Usage), so a pass reads the pending tasks and their services' tasks, not
every task.
A replica whose spec mounts a named local volume that may not move is pinned to the node it is
first placed on: the commit records that node in Task.pinned_node (the orchestrator copies it
into the slot's next task; placement then considers only that node).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from podium.manager import ids, placement
from podium.manager._loop import ReconcileLoop
from podium.manager.eligibility import is_eligible
from podium.manager.store import Change, ReadTx, Store, WriteTx
from podium.rules.mounts import pinning_volume
from podium.rules.taskstate import has_finished, is_pending
from podium.v1 import objects

_ALL = "*"
FAILURE_MEMORY_S = 300.0


class Scheduler(ReconcileLoop):
    name = "scheduler"

    def __init__(self, *, store: Store,
                 on_assigned: Callable[[float], None] | None = None) -> None:
        """`on_assigned`: called, after each commit, with the seconds every task it assigned
        waited from its creation (the manager's metrics)."""
        super().__init__(store=store)
        self._on_assigned = on_assigned
        # What the tasks on each node hold, kept from the changes this loop observes (all of
        # them are drained before each pass, with no await before its snapshot: the two agree).
        # Built at the first pass with something to place: a manager that starts has its
        # agents to register first.
        self._usage: placement.Usage | None = None

    def seed(self, view: ReadTx) -> None:
        self._usage = None
        self.mark(_ALL)

    def observe(self, change: Change) -> None:
        obj = change.obj
        if isinstance(obj, objects.Task):
            if self._usage is None:
                pass
            elif change.action == "delete":
                self._usage.gone(obj.id)
            else:
                self._usage.seen(obj)
            # New work, or resources freed.
            if is_pending(obj) or change.action == "delete" or has_finished(obj):
                self.mark(_ALL)
        elif isinstance(obj, objects.Node):
            self.mark(_ALL)

    def on_wake(self) -> None:
        self.mark(_ALL)

    async def reconcile(self, dirty: set[str]) -> None:
        view = self._store.view()
        pending = view.pending_tasks()
        if not pending:
            return  # a node's change, say: nothing to place (and no scan of every task)
        if self._usage is None:
            self._usage = placement.Usage(view.tasks())
        now = time.time()
        # The tasks of the services being placed, for their recent failures; every task only
        # when a pending one pins a volume (its slot's pinned node); the rest is self._usage.
        services = {t.service_id for t in pending}
        related = [t for sid in services for t in view.tasks_of_service(sid)]
        pinned = any(pinning_volume(t.spec) for t in pending)
        plan = placement.schedule(
            list(view.nodes()), list(view.tasks()) if pinned else related, pending, now,
            failures=recent_failures(related, now), usage=self._usage)
        plan.revision = view.revision
        if plan.wake_at is not None:
            self.wake_at(plan.wake_at)
        if plan.placed or plan.unplaced:
            waited: list[float] = []
            await self._store.update(lambda tx: commit_plan(tx, plan, waited))
            if self._on_assigned is not None:
                for seconds in waited:
                    self._on_assigned(seconds)


def recent_failures(tasks: list[objects.Task], now: float) -> set[tuple[str, str]]:
    """(service id, node id) pairs where a task of the service failed within FAILURE_MEMORY_S:
    a replacement tries those nodes last."""
    return {
        (t.service_id, t.node_id)
        for t in tasks
        if t.node_id
        and t.status.state == objects.TASK_STATE_FAILED
        and now - ids.seconds(t.status.timestamp) < FAILURE_MEMORY_S
    }


def commit_plan(tx: WriteTx, plan: placement.Plan, waited: list[float] | None = None) -> int:
    """Applies a plan; returns the number of tasks assigned. `waited` gets, for each task
    assigned, the seconds from its creation to this commit."""
    now = ids.timestamp()
    assigned = 0
    # Nothing changed since the plan was made (the commit follows the snapshot with no await
    # in between, as on SQLite): its decisions stand as they are. Otherwise each is checked
    # against the state now.
    unchanged = plan.revision is not None and plan.revision == tx.revision
    # Per node, built at its first decision from the tasks on it now, then kept up to date
    # with this commit's own assignments (one pass over a node's tasks per commit).
    fits: dict[str, placement.NodeFit] = {}
    for decision in plan.placed:
        task = tx.get_task(decision.task_id)
        node = tx.peek_node(decision.node_id)  # read only
        if task is None or not is_pending(task) or node is None:
            continue
        if not unchanged:
            if not is_eligible(node):
                continue  # went away since the snapshot; the next pass places the task
            fit = fits.get(node.id)
            if fit is None:
                fit = fits[node.id] = placement.NodeFit(node, tx.peek_tasks_of_node(node.id))
            if fit.shortfall(task):
                continue  # filled up since the snapshot; the next pass places the task
            fit.take(task)
        task.node_id = decision.node_id
        if task.slot and not task.canary and pinning_volume(task.spec) is not None:
            task.pinned_node = decision.node_id  # placement kept it on its pin, if it had one
        task.status.state = objects.TASK_STATE_ASSIGNED
        task.status.timestamp.CopyFrom(now)
        task.status.message = f"assigned to {node.description.name}"
        tx.update(task)
        assigned += 1
        if waited is not None:
            waited.append(max(0.0, ids.seconds(now) - ids.seconds(task.meta.created)))
    for unplaced in plan.unplaced:
        task = tx.get_task(unplaced.task_id)
        if task is None or not is_pending(task) or task.status.message == unplaced.reason:
            continue
        task.status.message = unplaced.reason
        task.status.timestamp.CopyFrom(now)
        tx.update(task)
    return assigned
