"""Updater: replaces a service's tasks after its spec changed, a few at a time, and rolls back.

The control API writes a new spec version and sets the service's update_status to UPDATING (or
ROLLING_BACK); this loop carries it out. Each round looks at the service's slots (replicated:
1..replicas; global: one per node):

- todo: the slot's live tasks all run another version;
- in flight: the slot has a task of the target version that is not yet healthy, or no live task
  at all (stop-first, between the old task's end and the new one's creation);
- done: the slot's newest task runs the target version and is healthy.

It starts new slots while fewer than `parallelism` are in flight (0: all at once), `delay` after
the previous slot was done. Start-first creates the slot's new task beside the old one (the
orchestrator ends the old one once the new one is ready, so the slot never stops serving);
stop-first ends the old task (the agent drains it from the mesh before stopping it) and creates
its replacement in the same transaction.

A task of the target version is healthy once it runs and is ready (its check passed) or, without
a check, has run for `monitor`; it has failed when it ended on its own (exited, could not start,
was rejected), was restarted in place, turned unhealthy before it had been healthy for
`monitor`, or was not healthy `healthy_deadline` after it was created. Failures are recorded in
update_status.failed_tasks (so a restarted manager counts each once); beyond
`max_failure_ratio` of the slots, `failure_action` applies: rollback (the spec goes back to the
version the update came from, and every other service changed by the same deploy goes back with
it), pause, or continue. A rollback that fails pauses: it is never rolled back in turn. The update
is COMPLETED (ROLLED_BACK) once every slot is done and the last new task has been watched for
`monitor`.

Canaries (spec.canary.count > 0, updates only): first `count` extra tasks of the new version
(Task.canary, slots above the replica count) start beside the old ones; once healthy the update
waits in CANARY until promoted (PromoteService, or after `auto_promote_after` healthy). Promoted
canaries take over slots (their old tasks leave as with start-first) and the rest are updated.

What this loop holds in memory is only timing (when a task was first seen healthy, when the next
slot may start); a restarted manager starts those clocks again, which only makes it wait longer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from podium.manager import ids
from podium.manager._loop import ReconcileLoop
from podium.manager.orchestrator import new_task
from podium.manager.store import Change, ReadTx, Store, WriteTx
from podium.manager.versions import end_task, promote, start_rollback
from podium.rules import update as rules
from podium.rules.names import task_name
from podium.rules.taskstate import is_live
from podium.v1 import objects

US = objects.UpdateStatus
ACTIVE = rules.ACTIVE
REMOVED = objects.TASK_STATE_REMOVED
RUNNING = objects.TASK_STATE_RUNNING
GLOBAL = objects.ServiceSpec.MODE_GLOBAL
# States a task reaches on its own when it fails; SHUTDOWN, ORPHANED and REMOVED are the
# manager's doing (a host lost, a slot scaled away) and are no verdict on the version.
_FAILED_STATES = (
    objects.TASK_STATE_COMPLETE,
    objects.TASK_STATE_FAILED,
    objects.TASK_STATE_REJECTED,
)
PENDING, HEALTHY, FAILED = "pending", "healthy", "failed"


def why_failed(task: objects.Task) -> str:
    status = task.status
    if status.state in _FAILED_STATES:
        return status.err or status.message or "exited"
    if status.health == objects.HEALTH_UNHEALTHY or "unhealthy" in status.message:
        return status.message or "unhealthy"
    if status.restarts:
        detail = status.history[-1].message if status.history else status.message
        return f"restarted ({detail})" if detail else "restarted"
    return status.err or status.message


@dataclass(slots=True)
class _Slot:
    key: str  # the slot number, or the node id of a global task
    tasks: list[objects.Task] = field(default_factory=list)  # live, newest first


class Updater(ReconcileLoop):
    """The dirty set holds service ids."""

    name = "updater"

    def __init__(self, *, store: Store, clock: Callable[[], float] = time.time) -> None:
        super().__init__(store=store)
        self._now = clock
        # Task id -> when it was first seen running and ready (this process's clock).
        self._healthy_since: dict[str, float] = {}
        # Service id -> when the next slot may start (`delay` after the last one was done).
        self._next_start: dict[str, float] = {}
        # Service id -> when its canaries were all first seen healthy.
        self._canaries_healthy: dict[str, float] = {}
        # Service id -> slots seen done, to start `delay` when one more is.
        self._done_seen: dict[str, int] = {}
        # Tasks that were healthy for their whole monitor window: no longer judged.
        self._passed: set[str] = set()

    # -- the loop --------------------------------------------------------------------------

    def seed(self, view: ReadTx) -> None:
        for service in view.services():
            self.mark(service.id)

    def observe(self, change: Change) -> None:
        obj = change.obj
        if isinstance(obj, objects.Service):
            self.mark(obj.id)
        elif isinstance(obj, objects.Task):
            service = self._store.view().get_service(obj.service_id)
            if service is not None and service.update_status.state in ACTIVE:
                self.mark(obj.service_id)
            if change.action == "delete":
                self._healthy_since.pop(obj.id, None)
                self._passed.discard(obj.id)

    def on_wake(self) -> None:
        for service in self._store.view().services():
            if service.update_status.state in ACTIVE:
                self.mark(service.id)

    async def reconcile(self, dirty: set[str]) -> None:
        now = self._now()

        def apply(tx: WriteTx) -> None:
            for service_id in dirty:
                self.reconcile_service(tx, service_id, now)

        await self._store.update(apply)

    # -- one service -----------------------------------------------------------------------

    def reconcile_service(self, tx: WriteTx, service_id: str, now: float) -> None:
        service = tx.get_service(service_id)
        if service is None:
            for key in (self._next_start, self._canaries_healthy, self._done_seen):
                key.pop(service_id, None)
            return
        status = service.update_status
        if status.state not in ACTIVE:
            return
        rollback = status.state == US.STATE_ROLLING_BACK
        plan = rules.plan(service.spec, rollback=rollback)
        tasks = tx.tasks_of_service(service_id)
        target = service.spec_version
        started = ids.seconds(status.started)
        mine = [t for t in tasks
                if t.spec_version == target and ids.seconds(t.meta.created) >= started - 1e-3]
        verdicts = {t.id: self._verdict(t, plan, now) for t in mine}
        failed = [t for t in mine if verdicts[t.id] == FAILED
                  and t.id not in status.failed_tasks]
        if failed:
            status.failed_tasks.extend(t.id for t in failed)
            first = failed[0]
            status.reason = f"{task_name(first)} {why_failed(first)}"
            status.message = status.reason
            total = max(len(self._slots(service, tasks)), 1)
            if len(status.failed_tasks) > plan.max_failure_ratio * total:
                self._on_failure(tx, service, plan, first, now)
                return
            tx.update(service)
        canary = service.spec.canary
        if (not rollback and canary.count and not status.promoted
                and service.spec.mode != GLOBAL):
            self._canary_round(tx, service, tasks, verdicts, now)
            return
        self._rolling_round(tx, service, plan, tasks, verdicts, now)

    def _verdict(self, task: objects.Task, plan: rules.Plan, now: float) -> str:
        if task.id in self._passed:
            return HEALTHY
        status = task.status
        since = self._healthy_since.get(task.id)
        serving = status.state == RUNNING and status.ready
        if (status.state in _FAILED_STATES or status.restarts
                or status.health == objects.HEALTH_UNHEALTHY
                or (since is not None and not serving and is_live(task))):
            return FAILED
        if not is_live(task):
            return PENDING  # ended by the manager (its node was lost): no verdict
        if serving:
            if since is None:
                since = self._healthy_since[task.id] = now
            if now - since >= plan.monitor_s:
                self._passed.add(task.id)
                return HEALTHY
            self.wake_at(since + plan.monitor_s + 0.01)
            # With a check, healthy now (the next slot may start) but still watched; without
            # one, running for `monitor` is what makes it healthy.
            return HEALTHY if status.health != objects.HEALTH_NONE else PENDING
        created = ids.seconds(task.meta.created)
        if now - created > plan.healthy_deadline_s:
            return FAILED
        self.wake_at(created + plan.healthy_deadline_s + 0.01)
        return PENDING

    def _monitored_until(self, task: objects.Task, plan: rules.Plan) -> float:
        since = self._healthy_since.get(task.id)
        return 0.0 if since is None else since + plan.monitor_s

    # -- slots -----------------------------------------------------------------------------

    @staticmethod
    def _slots(service: objects.Service, tasks: list[objects.Task]) -> dict[str, _Slot]:
        slots: dict[str, _Slot] = {}
        if service.spec.mode != GLOBAL:
            for n in range(1, service.spec.replicas + 1):
                slots[str(n)] = _Slot(str(n))
        live = sorted((t for t in tasks if is_live(t) and not t.canary),
                      key=lambda t: -t.meta.created.ToNanoseconds())
        for task in live:
            key = task.node_id if service.spec.mode == GLOBAL else str(task.slot)
            if key in slots or service.spec.mode == GLOBAL:
                slots.setdefault(key, _Slot(key)).tasks.append(task)
        return slots

    def _rolling_round(self, tx: WriteTx, service: objects.Service, plan: rules.Plan,
                       tasks: list[objects.Task], verdicts: dict[str, str], now: float) -> None:
        status = service.update_status
        target = service.spec_version
        todo: list[_Slot] = []
        in_flight: list[_Slot] = []
        done = 0
        watching_until = 0.0
        starting: list[objects.Task] = []
        for slot in self._slots(service, tasks).values():
            current = [t for t in slot.tasks if t.spec_version == target]
            if not slot.tasks:
                in_flight.append(slot)
            elif not current:
                todo.append(slot)
            else:
                verdict = verdicts.get(current[0].id, HEALTHY)
                if verdict == PENDING:
                    in_flight.append(slot)
                    starting.append(current[0])
                else:
                    done += 1
                    watching_until = max(watching_until, self._monitored_until(current[0], plan))
        for stray in tasks:  # canaries of another version, or after a rollback
            if stray.canary and is_live(stray):
                end_task(tx, stray)
        total = done + len(todo) + len(in_flight)
        seen = self._done_seen.get(service.id, 0)
        if done > seen and plan.delay_s:
            self._next_start[service.id] = now + plan.delay_s
        self._done_seen[service.id] = done
        width = plan.parallelism or max(total, 1)
        may_start = now >= self._next_start.get(service.id, 0.0)
        todo.sort(key=lambda s: (len(s.key), s.key))
        begun: list[str] = []
        while todo and len(in_flight) < width and may_start:
            slot = todo.pop(0)
            self._begin(tx, service, slot, plan)
            in_flight.append(slot)
            begun.append(slot.key)
            if plan.delay_s:
                break  # one at a time while a delay applies
        if not todo and not in_flight and now >= watching_until:
            self._finish(tx, service, now)
            return
        if watching_until > now and not todo and not in_flight:
            self.wake_at(watching_until + 0.01)
        if not may_start:
            self.wake_at(self._next_start[service.id])
        verb = "rolling back" if status.state == US.STATE_ROLLING_BACK else "updating"
        detail = ""
        if starting:
            detail = f": {task_name(starting[0])} starting"
        elif begun:
            detail = f": started {service.spec.name}.{begun[0]}" if service.spec.mode != GLOBAL \
                else ": started a node"
        elif not todo and not in_flight:
            detail = ": watching the new tasks"
        message = f"{verb} {done}/{total}{detail}"
        if status.state == US.STATE_ROLLING_BACK and status.reason:
            message += f" (after {status.reason})"
        if (status.done, status.total, status.message) != (done, total, message):
            status.done, status.total = done, total
            status.message = message
            tx.update(service)

    def _begin(self, tx: WriteTx, service: objects.Service, slot: _Slot,
               plan: rules.Plan) -> None:
        if service.spec.mode == GLOBAL:
            node_id = slot.key
            for task in slot.tasks:
                end_task(tx, task)
            tx.create(new_task(service, slot=0, node_id=node_id, attempt=0))
            return
        if not plan.start_first:
            for task in slot.tasks:
                end_task(tx, task)
        tx.create(new_task(service, slot=int(slot.key), node_id="", attempt=0))

    def _finish(self, tx: WriteTx, service: objects.Service, now: float) -> None:
        status = service.update_status
        rollback = status.state == US.STATE_ROLLING_BACK
        status.state = US.STATE_ROLLED_BACK if rollback else US.STATE_COMPLETED  # type: ignore[assignment]
        status.completed.CopyFrom(ids.timestamp(now))
        status.done = status.total
        if rollback:
            status.message = f"rolled back to version {service.spec_version}"
            if status.reason:
                status.message = f"{status.reason}; {status.message}"
        else:
            status.message = f"updated to version {service.spec_version}"
        tx.update(service)
        self._next_start.pop(service.id, None)
        self._canaries_healthy.pop(service.id, None)
        self._done_seen.pop(service.id, None)

    # -- canaries --------------------------------------------------------------------------

    def _canary_round(self, tx: WriteTx, service: objects.Service, tasks: list[objects.Task],
                      verdicts: dict[str, str], now: float) -> None:
        status = service.update_status
        target = service.spec_version
        wanted = service.spec.canary.count
        canaries = [t for t in tasks if t.canary and is_live(t)]
        for stray in [t for t in canaries if t.spec_version != target]:
            end_task(tx, stray)
        mine = [t for t in canaries if t.spec_version == target]
        taken = {t.slot for t in mine}
        slot = service.spec.replicas
        for _ in range(wanted - len(mine)):
            slot += 1
            while slot in taken:
                slot += 1
            task = new_task(service, slot=slot, node_id="", attempt=0)
            task.canary = True
            tx.create(task)
            mine.append(task)
        healthy = [t for t in mine if verdicts.get(t.id) == HEALTHY]
        after = service.spec.canary.auto_promote_after.ToNanoseconds() / 1e9
        if len(healthy) < wanted:
            self._canaries_healthy.pop(service.id, None)
            message = f"canary: {len(healthy)}/{wanted} healthy"
            state = US.STATE_UPDATING
        else:
            since = self._canaries_healthy.setdefault(service.id, now)
            if after and now - since >= after:
                self._promote(tx, service, now, by="after "
                              f"{service.spec.canary.auto_promote_after.ToJsonString()} healthy")
                return
            if after:
                self.wake_at(since + after)
                message = (f"canary: {wanted} healthy; promoted automatically after {after:g} s "
                           f"(or `podium promote {service.spec.name}`)")
            else:
                message = (f"canary: {wanted} healthy; promote with "
                           f"`podium promote {service.spec.name}`")
            state = US.STATE_CANARY
        if status.state != state or status.message != message:
            status.state = state  # type: ignore[assignment]
            status.message = message
            status.total = int(service.spec.replicas)
            tx.update(service)

    def _promote(self, tx: WriteTx, service: objects.Service, now: float, *, by: str) -> None:
        promote(tx, service, by=by)
        self._canaries_healthy.pop(service.id, None)

    # -- failure ---------------------------------------------------------------------------

    def _on_failure(self, tx: WriteTx, service: objects.Service, plan: rules.Plan,
                    culprit: objects.Task, now: float) -> None:
        status = service.update_status
        reason = status.reason
        rollback = status.state == US.STATE_ROLLING_BACK
        if plan.failure_action == rules.UC.FAILURE_ACTION_CONTINUE:
            tx.update(service)
            return
        if rollback:
            status.state = US.STATE_ROLLBACK_PAUSED  # type: ignore[assignment]
            status.message = f"{reason}; rollback to version {service.spec_version} paused"
            tx.update(service)
            return
        if plan.failure_action == rules.UC.FAILURE_ACTION_PAUSE:
            status.state = US.STATE_PAUSED  # type: ignore[assignment]
            status.message = (f"{reason}; update to version {service.spec_version} paused "
                              f"(`podium rollback {service.spec.name}` or a new deploy goes on)")
            tx.update(service)
            return
        start_rollback(tx, service, status.from_version, reason=reason, now=now)
        if not status.deploy_id:
            return
        for other in tx.services():
            other_status = other.update_status
            if (other.id != service.id and other_status.deploy_id == status.deploy_id
                    and other_status.state in (*ACTIVE, US.STATE_COMPLETED, US.STATE_PAUSED)
                    and other_status.from_version
                    and other.spec_version == other_status.to_version):
                start_rollback(tx, other, other_status.from_version,
                               reason=f"{service.spec.name} failed in the same deploy ({reason})",
                               now=now)


