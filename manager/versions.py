"""A service's versions and the writes that move it between them, shared by the control API
(a deploy, `podium rollback`, `podium promote`) and the updater (an automatic rollback).

Every spec change that replaces tasks gets the next version number and is kept in
Service.versions (the last podium.rules.update.VERSIONS_KEPT); the service's update_status then
says where the move to it stands. These functions write inside the caller's transaction.
"""

from __future__ import annotations

from podium.manager import ids
from podium.manager.store import WriteTx
from podium.rules import update as update_rules
from podium.rules.taskstate import is_live
from podium.v1 import objects

REMOVED = objects.TASK_STATE_REMOVED
US = objects.UpdateStatus
UNSETTLED = update_rules.UNSETTLED


def stable_version(service: objects.Service) -> int:
    """The version the service last ran in full: what a failed update goes back to. An update
    on top of an unfinished one still goes back to where the first one started."""
    status = service.update_status
    if status.state in update_rules.UNFINISHED and status.from_version:
        return int(status.from_version)
    return int(service.spec_version)


def add_version(service: objects.Service, spec: objects.ServiceSpec, change: str) -> int:
    """Gives `spec` the next version number, keeps it in service.versions (the last
    VERSIONS_KEPT, never dropping the current one) and returns its number."""
    version = max(service.last_version, service.spec_version) + 1
    service.last_version = version
    kept = objects.ServiceVersion(version=version, spec=spec, change=change)
    kept.time.CopyFrom(ids.timestamp())
    service.versions.append(kept)
    while len(service.versions) > update_rules.VERSIONS_KEPT:
        oldest = next(i for i, v in enumerate(service.versions)
                      if v.version not in (service.spec_version, version))
        del service.versions[oldest]
    return version


def begin_update(service: objects.Service, spec: objects.ServiceSpec, deploy_id: str) -> None:
    """Moves the service to a new version of its spec and sets it UPDATING (the updater
    replaces its tasks)."""
    origin = stable_version(service)
    change = update_rules.changes(service.spec, spec)
    version = add_version(service, spec, change)
    service.spec.CopyFrom(spec)
    service.spec_version = version
    status = service.update_status
    status.Clear()
    status.state = US.STATE_UPDATING  # type: ignore[assignment]
    status.started.CopyFrom(ids.timestamp())
    status.from_version = origin
    status.to_version = version
    status.deploy_id = deploy_id
    note = update_rules.plan(spec).order_note
    status.message = f"updating to version {version}: {change}" + (f" ({note})" if note else "")


def end_task(tx: WriteTx, task: objects.Task, desired: int = REMOVED) -> None:
    """Lowers the task's desired state to `desired` (SHUTDOWN keeps it as history, REMOVED has
    it deleted once its container is gone); never raises it back."""
    copy = tx.get_task(task.id)
    if copy is not None and copy.desired_state < desired:
        copy.desired_state = desired  # type: ignore[assignment]
        tx.update(copy)


def version_spec(service: objects.Service, version: int) -> objects.ServiceSpec | None:
    for kept in service.versions:
        if kept.version == version:
            return kept.spec
    return None


def start_rollback(tx: WriteTx, service: objects.Service, version: int, *, reason: str,
                   now: float | None = None, manual: bool = False) -> None:
    """Puts the service back on `version`'s spec (keeping its replica count) and sets it
    ROLLING_BACK; the updater replaces the tasks of other versions under rollback_config."""
    spec = version_spec(service, version)
    status = service.update_status
    if spec is None:
        status.state = US.STATE_PAUSED  # type: ignore[assignment]
        status.message = f"{reason}; version {version} is no longer kept: paused"
        tx.update(service)
        return
    replicas = service.spec.replicas
    current = service.spec_version
    service.spec.CopyFrom(spec)
    service.spec.replicas = replicas
    service.spec_version = version
    deploy_id = status.deploy_id
    status.Clear()
    status.state = US.STATE_ROLLING_BACK  # type: ignore[assignment]
    status.started.CopyFrom(ids.timestamp(now))
    status.from_version = current
    status.to_version = version
    status.deploy_id = deploy_id
    status.manual = manual
    status.reason = reason
    status.message = (f"{reason}; rolling back to version {version}" if reason else
                      f"rolling back to version {version}" + (" on request" if manual else ""))
    tx.update(service)
    for task in tx.tasks_of_service(service.id):
        if task.canary and is_live(task):
            end_task(tx, task)


def promote(tx: WriteTx, service: objects.Service, *, by: str) -> None:
    """Promotes an update's canaries: each takes over a slot still on another version (whose
    task the orchestrator ends once the canary is ready: it already is), then the update goes
    on with the remaining slots."""
    status = service.update_status
    target = service.spec_version
    tasks = tx.tasks_of_service(service.id)
    canaries = [t for t in tasks if t.canary and is_live(t) and t.spec_version == target]
    on_target = {t.slot for t in tasks
                 if is_live(t) and not t.canary and t.spec_version == target}
    free = [slot for slot in range(1, service.spec.replicas + 1) if slot not in on_target]
    for canary, slot in zip(canaries, free, strict=False):
        copy = tx.get_task(canary.id)
        assert copy is not None
        copy.canary = False
        copy.slot = slot
        tx.update(copy)
    for canary in canaries[len(free):]:
        end_task(tx, canary)
    status.promoted = True
    status.state = US.STATE_UPDATING  # type: ignore[assignment]
    status.message = f"canaries promoted {by}"
    tx.update(service)


