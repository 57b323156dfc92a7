"""Orchestrators: keep each service's tasks in line with its spec.

Replicated mode keeps one live task in each slot 1..replicas; global mode one
live task on every eligible node. A task is live while its desired state is
RUNNING; the orchestrator ends a task by lowering its desired state (SHUTDOWN
to keep it as history, REMOVED to have it deleted once its container is gone)
and never deletes tasks itself.

A live task of another version than its service's is left running: replacing it is the
updater's work (podium.manager.updater), and so are canaries.

Agents restart containers in place; a live task whose status reached a final
state (its agent gave up, or it could not start) is replaced, as its restart
policy allows, in the same slot by a new task that may not be placed before a
restart delay growing with each consecutive attempt (0.5 s doubling to 5 min),
so a task that can never start is retried without spinning; a task that ran for
a minute before it ended starts the count over.

A replica holding a named local volume that may not move (rules.mounts.pinning_volume) is
pinned to the node with its data: a slot's new task gets the `pinned_node` of the slot's
newest task that has one, so a failover waits for that node rather than starting empty.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from podium.manager import ids
from podium.manager._loop import ReconcileLoop
from podium.manager.eligibility import (
    ENGINE_NOT_ANSWERING,
    NOT_READY,
    ineligible,
    is_eligible,
)
from podium.manager.store import Change, ReadTx, Store, WriteTx
from podium.manager.versions import end_task
from podium.rules.constraints import parse_constraint
from podium.rules.mounts import pinning_volume
from podium.rules.restart import RESET_AFTER_S, attempts_exhausted, backoff
from podium.rules.taskstate import has_finished, is_live
from podium.v1 import objects

RUNNING = objects.TASK_STATE_RUNNING
SHUTDOWN = objects.TASK_STATE_SHUTDOWN
REMOVED = objects.TASK_STATE_REMOVED
GLOBAL = objects.ServiceSpec.MODE_GLOBAL

def restart_delay(attempt: int, first: float = 0.0) -> float:
    """Delay before the `attempt`-th replacement in a slot may start: the restart backoff
    (podium.rules.restart) after `attempt` + 1 failures, the first of which the agent met."""
    return backoff(attempt + 1, first) if attempt > 0 else 0.0

# A new task's status message until the scheduler places it (or says why it cannot).
WAITING = "waiting for a node"


def _first_delay(spec: objects.ServiceSpec) -> float:
    return spec.restart_policy.delay.ToNanoseconds() / 1e9


def next_attempt(task: objects.Task) -> int:
    """Attempt number of a finished task's replacement. Attempts count the agent's restarts in
    place and the manager's replacements; they grow the restart delay, but a task that ran for
    the policy's window (else RESET_AFTER_S) starts the count over."""
    lived = (
        ids.seconds(task.status.timestamp)
        - ids.seconds(task.meta.created)
        - restart_delay(task.attempt, _first_delay(task.spec))
    )
    window = task.spec.restart_policy.window.ToNanoseconds() / 1e9 or RESET_AFTER_S
    return 1 if lived > window else task.attempt + task.status.restarts + 1


def may_replace(task: objects.Task) -> bool:
    """Whether the restart policy lets the manager replace a task that ended on its own."""
    policy = task.spec.restart_policy
    if policy.condition == objects.RestartPolicy.CONDITION_NONE:
        return False
    if (policy.condition == objects.RestartPolicy.CONDITION_ON_FAILURE
            and task.status.state == objects.TASK_STATE_COMPLETE):
        return False
    if attempts_exhausted(next_attempt(task) - 1, policy.max_attempts):
        return False
    return True


def new_task(service: objects.Service, *, slot: int, node_id: str, attempt: int) -> objects.Task:
    task = objects.Task(
        id=ids.new_id(),
        service_id=service.id,
        service_name=service.spec.name,
        slot=slot,
        node_id=node_id,
        spec_version=service.spec_version,
        desired_state=RUNNING,
        attempt=attempt,
    )
    task.spec.CopyFrom(service.spec)
    task.status.state = objects.TASK_STATE_PENDING
    task.status.timestamp.CopyFrom(ids.timestamp())
    task.status.message = WAITING
    delay = restart_delay(attempt, _first_delay(service.spec))
    if delay:
        task.not_before.CopyFrom(ids.timestamp(time.time() + delay))
        task.status.message = f"restarting in {delay:g} s (attempt {attempt})"
    return task


class Orchestrator(ReconcileLoop):
    """Reconciles services; the dirty set holds service ids."""

    name = "orchestrator"

    def __init__(self, *, store: Store) -> None:
        super().__init__(store=store)
        # The live tasks of each slot (a global service's: of each node), kept from the watch:
        # an id, or a set of them while a replacement runs beside the task it replaces. Only
        # then can a task turning RUNNING (or ready) let another go, so only then does it cost
        # a reconcile of its whole service (at thousands of replicas, most reports do not).
        self._slots: dict[tuple[str, int | str], str | set[str]] = {}

    def seed(self, view: ReadTx) -> None:
        for service in view.services():
            self.mark(service.id)
        for task in view.tasks():
            self._track(task, live=is_live(task))
            if view.get_service(task.service_id) is None:
                self.mark(task.service_id)

    def _track(self, task: objects.Task, *, live: bool) -> int:
        """Records whether `task` is live in its slot; how many live tasks the slot has."""
        key = (task.service_id, task.slot or task.node_id)
        held = self._slots.get(key)
        ids = {held} if isinstance(held, str) else set(held or ())
        if live:
            ids.add(task.id)
        else:
            ids.discard(task.id)
        if not ids:
            self._slots.pop(key, None)
        else:
            self._slots[key] = next(iter(ids)) if len(ids) == 1 else ids
        return len(ids)

    def observe(self, change: Change) -> None:
        obj = change.obj
        if isinstance(obj, objects.Service):
            self.mark(obj.id)
        elif isinstance(obj, objects.Task):
            live = change.action != "delete" and is_live(obj)
            in_slot = self._track(obj, live=live)
            # Finished: restart it. Running: an older task in its slot may now give way.
            if change.action == "update" and live and (
                has_finished(obj) or (obj.status.state == RUNNING and in_slot > 1)
            ):
                self.mark(obj.service_id)
        elif isinstance(obj, objects.Node):
            # Down or drained: its tasks move. A node in any other state moves no replicated
            # task (nothing is rebalanced), so thousands of agents reconnecting to a restarted
            # manager cost no reconcile of every service each. Global services follow nodes
            # coming and going.
            view = self._store.view()
            if change.action == "delete" or obj.status.state == objects.NodeStatus.STATE_DOWN \
                    or obj.spec.availability == objects.NodeSpec.AVAILABILITY_DRAIN:
                for task in view.tasks_of_node(obj.id):
                    if is_live(task):
                        self.mark(task.service_id)
            for service in view.services():
                if service.spec.mode == GLOBAL:
                    self.mark(service.id)

    async def reconcile(self, dirty: set[str]) -> None:
        def apply(tx: WriteTx) -> None:
            for service_id in dirty:
                self._reconcile_service(tx, service_id)

        await self._store.update(apply)

    def _reconcile_service(self, tx: WriteTx, service_id: str) -> None:
        service = tx.get_service(service_id)
        # Shared objects (peek): every change below goes through a copy (end_task, _orphan).
        tasks = tx.peek_tasks_of_service(service_id)
        if service is None:
            for task in tasks:
                end_task(tx, task, REMOVED)
            return
        glob = service.spec.mode == GLOBAL
        # Attempt numbers of the replacements of finished tasks, by slot (node id if global).
        attempts: dict[str, int] = {}
        writes = tx.writes
        for task in tasks:
            if not is_live(task):
                continue
            if not glob and _on_down_node(tx, task):
                # Failover: replace at once, without the restart delay (an empty slot is
                # filled below). The agent removes the old container if its node comes back.
                _orphan(tx, task)
                continue
            if task.canary or not has_finished(task):
                continue  # canaries are the updater's; so are running tasks of another version
            current = task.spec_version == service.spec_version
            if current and not may_replace(task):
                continue  # ended for good: it keeps its slot
            end_task(tx, task, SHUTDOWN)
            key = task.node_id if glob else str(task.slot)
            attempts[key] = next_attempt(task) if current else 0
        if tx.writes != writes:  # tasks ended above: read them as they are now
            tasks = tx.peek_tasks_of_service(service_id)
        live = [t for t in tasks if is_live(t) and not t.canary]
        if glob:
            self._reconcile_global(tx, service, live, attempts)
        else:
            self._reconcile_replicated(tx, service, live, attempts)

    def _reconcile_replicated(self, tx: WriteTx, service: objects.Service,
                              live: list[objects.Task], attempts: dict[str, int]) -> None:
        wanted = service.spec.replicas
        groups: dict[int, list[objects.Task]] = {}
        for task in live:
            groups.setdefault(task.slot, []).append(task)
        for group in groups.values():
            if len(group) > 1:  # newest first (most slots hold one task: no sort, no read)
                group.sort(key=lambda t: -t.meta.created.ToNanoseconds())
        by_slot: dict[int, objects.Task] = {}
        for slot, group in groups.items():
            if slot > wanted:
                for task in group:
                    end_task(tx, task, REMOVED)
                continue
            # The slot's task is its newest of the service's version (else its newest). Others
            # give way once it serves: a replacement (update, drain) never lowers the count of
            # ready tasks; until then both live.
            current = [t for t in group if t.spec_version == service.spec_version]
            keeper = current[0] if current else group[0]
            serving = keeper.status.state == RUNNING and keeper.status.ready
            for task in group:
                if task is not keeper and (serving or has_finished(task)):
                    end_task(tx, task, REMOVED)
            by_slot[slot] = keeper
        pinning = pinning_volume(service.spec)
        pins = _slot_pins(tx.peek_tasks_of_service(service.id)) if pinning else {}
        for slot in range(1, wanted + 1):
            current_task = by_slot.get(slot)
            if current_task is None or _draining(tx, current_task):
                attempt = attempts.get(str(slot), 0) if current_task is None else 0
                task = new_task(service, slot=slot, node_id="", attempt=attempt)
                task.pinned_node = pins.get(slot, "")
                tx.create(task)

    def _reconcile_global(self, tx: WriteTx, service: objects.Service,
                          live: list[objects.Task], attempts: dict[str, int]) -> None:
        constraints = [parse_constraint(c) for c in service.spec.placement.constraints]

        def matches(node: objects.Node) -> bool:
            return all(c.matches(node.id, node.description.name, node.description.labels)
                       for c in constraints)

        covered: set[str] = set()
        for task in live:
            node = tx.peek_node(task.node_id)
            if task.node_id in covered or (node is not None and not _may_keep(node, matches)):
                end_task(tx, task, REMOVED)
            else:
                covered.add(task.node_id)
        for node in tx.nodes():
            if node.id not in covered and is_eligible(node) and matches(node):
                tx.create(new_task(service, slot=0, node_id=node.id,
                                   attempt=attempts.get(node.id, 0)))


def _slot_pins(tasks: list[objects.Task]) -> dict[int, str]:
    """Slot -> the pinned node of its newest task that has one."""
    pins: dict[int, str] = {}
    for task in sorted(tasks, key=lambda t: t.meta.created.ToNanoseconds()):
        if task.pinned_node and task.slot:
            pins[task.slot] = task.pinned_node
    return pins


def _on_down_node(tx: WriteTx, task: objects.Task) -> bool:
    node = tx.peek_node(task.node_id) if task.node_id else None
    return node is not None and node.status.state == objects.NodeStatus.STATE_DOWN


def _draining(tx: WriteTx, task: objects.Task) -> bool:
    node = tx.peek_node(task.node_id) if task.node_id else None
    return node is not None and node.spec.availability == objects.NodeSpec.AVAILABILITY_DRAIN


def _orphan(tx: WriteTx, task: objects.Task) -> None:
    copy = tx.get_task(task.id)
    if copy is None:
        return
    node = tx.get_node(task.node_id)
    copy.desired_state = REMOVED  # type: ignore[assignment]
    copy.status.state = objects.TASK_STATE_ORPHANED  # type: ignore[assignment]
    copy.status.message = f"node {node.description.name if node else task.node_id} is down"
    copy.status.timestamp.CopyFrom(ids.timestamp())
    tx.update(copy)


def _may_keep(node: objects.Node, matches: Callable[[objects.Node], bool]) -> bool:
    """A global task stays on a node that may come back (not ready, or its engine not
    answering) and on a paused one; it leaves a node that is drained, or an active one that no
    longer matches."""
    if node.spec.availability == objects.NodeSpec.AVAILABILITY_DRAIN:
        return False
    return (ineligible(node) in (NOT_READY, ENGINE_NOT_ANSWERING)
            or node.spec.availability == objects.NodeSpec.AVAILABILITY_PAUSE or matches(node))
