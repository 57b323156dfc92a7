"""What a deploy would do, changing nothing: the core of Control.PlanDeploy.

Contract: ``plan_deploy(view, specs, now)`` reads a store view, writes nothing and reads no clock
(``now`` is unix seconds). ``specs`` are already validated and completed the way CreateService
and UpdateService complete them (the control API does that); each is compared with the service
of its name:

- none: ACTION_CREATE, one new task per slot (replicated) or per eligible matching node (global);
- the same spec: ACTION_UNCHANGED;
- a spec that replaces tasks (rules.update.replaces_tasks): ACTION_UPDATE, a new task for every
  slot, and every live task of the service replaced;
- otherwise (replicas or settings only): ACTION_RECONFIGURE, new tasks for the slots a scale-up
  adds, and the tasks of the slots a scale-down removes replaced.

``changes`` has one line per changed field path ("container.image: app:1 -> app:2"), walking
nested messages, repeated fields and maps; a secret or config reference is shown by its name and
stored version, never anything of its content.

New tasks are placed with the real placement (placement.schedule) on the view's nodes and tasks,
service by service in the order given, slots ascending, as the scheduler would see them arrive;
each placement counts against the capacity of those after it. An update goes
`parallelism` slots at a time: start-first keeps a batch's old tasks holding their resources
while its new ones are placed, stop-first frees them first; either way they are gone before the
next batch. A scale-down frees the removed slots before anything is placed. A new task that fits
nowhere has no node; ``pending`` then holds one reason per such task, in the order of those tasks
in ``new_tasks``. Canaries are not planned (they come on top of the slots, while promoted).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import cast

from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message

from podium.manager import placement
from podium.manager.eligibility import is_eligible
from podium.manager.scheduler import recent_failures
from podium.manager.store import ReadTx
from podium.rules import update as update_rules
from podium.rules.constraints import parse_constraint
from podium.rules.taskstate import is_live
from podium.v1 import control, objects

__all__ = ["PLANNED", "changes", "plan_deploy", "with_secrets"]

SP = control.ServicePlan
GLOBAL = objects.ServiceSpec.MODE_GLOBAL
RUNNING = objects.TASK_STATE_RUNNING
# The prefix of the ids of tasks that exist only in a plan.
PLANNED = "plan:"


def plan_deploy(view: ReadTx, specs: Sequence[objects.ServiceSpec], now: float
                ) -> list[control.ServicePlan]:
    nodes = list(view.nodes())
    node_names = {n.id: n.description.name or n.id for n in nodes}
    # Tasks holding resources as the plan goes on: the store's, then the planned ones.
    held: dict[str, objects.Task] = {t.id: t for t in view.tasks()}
    failures = recent_failures(list(held.values()), now)
    secret_versions = {s.id: (s.spec.name, int(s.version)) for s in view.secrets()}
    plans = []
    for spec in specs:
        current = view.service_by_name(spec.name)
        result = SP(name=spec.name)
        service_id = current.id if current is not None else PLANNED + spec.name
        live = [] if current is None else sorted(
            (t for t in view.tasks_of_service(current.id) if is_live(t) and not t.canary),
            key=lambda t: (t.slot, t.node_id, t.id))
        # Slots (node ids for a global service) to fill, and the old tasks each new task ends.
        batches: list[list[tuple[objects.Task, list[objects.Task]]]] = []
        freed: list[objects.Task] = []
        stop_first = False
        if current is None:
            result.action = SP.ACTION_CREATE  # type: ignore[assignment]
            batches = [[(t, []) for t in _new_tasks(spec, service_id, nodes, live=[])]]
        elif spec == current.spec:
            result.action = SP.ACTION_UNCHANGED  # type: ignore[assignment]
        elif update_rules.replaces_tasks(current.spec, spec):
            result.action = SP.ACTION_UPDATE  # type: ignore[assignment]
            settings = update_rules.plan(spec)
            new = _new_tasks(spec, service_id, nodes, live=[])
            old_by_slot: dict[str, list[objects.Task]] = {}
            for task in live:
                old_by_slot.setdefault(_slot_of(spec, task), []).append(task)
            pairs = [(t, old_by_slot.pop(_slot_of(spec, t), [])) for t in new]
            # Slots the new spec no longer has (fewer replicas, a node left out) end at once.
            freed = [t for tasks in old_by_slot.values() for t in tasks]
            width = settings.parallelism or max(len(pairs), 1)
            batches = [pairs[i:i + width] for i in range(0, len(pairs), width)]
            stop_first = not settings.start_first
            result.replaced_tasks.extend(t.id for t in live)
        else:
            result.action = SP.ACTION_RECONFIGURE  # type: ignore[assignment]
            if spec.mode != GLOBAL:
                freed = [t for t in live if t.slot > spec.replicas]
                result.replaced_tasks.extend(t.id for t in freed)
                new = _new_tasks(spec, service_id, nodes, live=live)
                batches = [[(t, []) for t in new]]
        if current is not None and current.spec != spec:
            result.changes.extend(changes(current.spec, spec, secret_versions))
        _release(held, freed)
        for batch in batches:
            ending = [task for _, old in batch for task in old]
            if stop_first:  # the old tasks end before their batch is placed
                _release(held, ending)
            _place(result, [t for t, _ in batch], held, nodes, node_names, failures, now)
            _release(held, ending)
        plans.append(result)
    return plans


def with_secrets(view: ReadTx, extra: Iterable[objects.Secret]) -> ReadTx:
    """``view`` that also finds ``extra`` (secrets a deploy would store first) by id."""
    return cast(ReadTx, _WithSecrets(view, {s.id: s for s in extra}))


class _WithSecrets:
    __slots__ = ("_extra", "_view")

    def __init__(self, view: ReadTx, extra: dict[str, objects.Secret]) -> None:
        self._view = view
        self._extra = extra

    def get_secret(self, secret_id: str) -> objects.Secret | None:
        return self._extra.get(secret_id) or self._view.get_secret(secret_id)

    def __getattr__(self, name: str) -> object:
        return getattr(self._view, name)


def _release(held: dict[str, objects.Task], tasks: Iterable[objects.Task]) -> None:
    for task in tasks:
        held.pop(task.id, None)


def _slot_of(spec: objects.ServiceSpec, task: objects.Task) -> str:
    return task.node_id if spec.mode == GLOBAL else str(task.slot)


def _new_tasks(spec: objects.ServiceSpec, service_id: str, nodes: list[objects.Node], *,
               live: list[objects.Task]) -> list[objects.Task]:
    """Tasks for the slots (replicated) or eligible nodes (global) that ``live`` leaves empty."""
    def task(slot: int, node_id: str) -> objects.Task:
        made = objects.Task(id=f"{PLANNED}{spec.name}.{slot or node_id}", service_id=service_id,
                            service_name=spec.name, slot=slot, node_id=node_id,
                            desired_state=RUNNING)
        made.spec.CopyFrom(spec)
        made.status.state = objects.TASK_STATE_PENDING
        return made

    if spec.mode == GLOBAL:
        covered = {t.node_id for t in live}
        constraints = [parse_constraint(c) for c in spec.placement.constraints]
        return [task(0, n.id) for n in sorted(nodes, key=lambda n: n.description.name or n.id)
                if n.id not in covered and is_eligible(n)
                and all(c.matches(n.id, n.description.name, n.description.labels)
                        for c in constraints)]
    taken = {t.slot for t in live}
    return [task(slot, "") for slot in range(1, spec.replicas + 1) if slot not in taken]


def _place(result: control.ServicePlan, pending: list[objects.Task],
           held: dict[str, objects.Task], nodes: list[objects.Node],
           node_names: dict[str, str], failures: set[tuple[str, str]], now: float) -> None:
    if not pending:
        return
    decided = placement.schedule(nodes, list(held.values()), pending, now, failures=failures)
    placed = {d.task_id: d.node_id for d in decided.placed}
    reasons = {u.task_id: u.reason for u in decided.unplaced}
    for task in pending:
        node_id = placed.get(task.id, "")
        result.new_tasks.add(slot=task.slot, node_id=node_id,
                             node_name=node_names.get(node_id, "") if node_id else "")
        if node_id:
            copy = objects.Task()
            copy.CopyFrom(task)
            copy.node_id = node_id
            copy.status.state = objects.TASK_STATE_ASSIGNED
            held[copy.id] = copy
        else:
            result.pending.append(reasons.get(task.id, "not placed"))


# -- changes ---------------------------------------------------------------------------------


def changes(old: objects.ServiceSpec, new: objects.ServiceSpec,
            secret_versions: dict[str, tuple[str, int]] | None = None) -> list[str]:
    """One line per changed field path, "container.image: app:1 -> app:2"; ``secret_versions``
    (id -> (name, version)) names the stored versions a reference points to."""
    out: list[str] = []
    _diff(old, new, "", out, secret_versions or {})
    return out


def _diff(old: Message, new: Message, path: str, out: list[str],
          versions: dict[str, tuple[str, int]]) -> None:
    for field in old.DESCRIPTOR.fields:
        name = field.name
        a, b = getattr(old, name), getattr(new, name)
        where = f"{path}{name}"
        if a == b and (field.message_type is None or not field.has_presence
                       or old.HasField(name) == new.HasField(name)):
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            for key in sorted(set(a) | set(b)):
                if key not in b:
                    out.append(f"{where}.{key}: removed")
                elif key not in a:
                    out.append(f"{where}.{key}: added {_value(value_field, b[key], versions)}")
                elif a[key] != b[key]:
                    if value_field.message_type is not None:
                        _diff(a[key], b[key], f"{where}.{key}.", out, versions)
                    else:
                        out.append(f"{where}.{key}: {_value(value_field, a[key], versions)} -> "
                                   f"{_value(value_field, b[key], versions)}")
        elif not isinstance(a, str | bytes) and isinstance(a, Sequence):
            _diff_list(field, list(a), list(b), where, out, versions)
        elif isinstance(a, Message) and isinstance(b, Message) and not isinstance(a, Duration):
            had = not field.has_presence or old.HasField(name)
            has = not field.has_presence or new.HasField(name)
            if had != has:
                out.append(f"{where}: {'added' if has else 'removed'}")
            _diff(a, b, where + ".", out, versions)
        else:
            before = _value(field, a, versions) if _present(old, field) else "unset"
            after = _value(field, b, versions) if _present(new, field) else "unset"
            out.append(f"{where}: {before} -> {after}")


def _present(msg: Message, field: object) -> bool:
    if getattr(field, "has_presence", False) and getattr(field, "message_type", None) is not None:
        return msg.HasField(field.name)  # type: ignore[attr-defined]
    return True


def _diff_list(field: object, a: list[object], b: list[object], where: str, out: list[str],
               versions: dict[str, tuple[str, int]]) -> None:
    message = getattr(field, "message_type", None) is not None
    if isinstance(a[0] if a else b[0], objects.FileReference):
        _diff_references(a, b, where, out, versions)  # type: ignore[arg-type]
    elif message and len(a) == len(b):
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                _diff(x, y, f"{where}[{index}].", out, versions)  # type: ignore[arg-type]
    else:
        def shown(items: Iterable[object]) -> str:
            return "[" + ", ".join(_value(field, v, versions) for v in items) + "]"
        out.append(f"{where}: {shown(a)} -> {shown(b)}")


def _diff_references(a: list[objects.FileReference], b: list[objects.FileReference], where: str,
                     out: list[str], versions: dict[str, tuple[str, int]]) -> None:
    """By name: a secret's content is never shown, only which stored version is mounted."""
    before = {r.name: r for r in a}
    after = {r.name: r for r in b}
    for name in sorted(set(before) | set(after)):
        x, y = before.get(name), after.get(name)
        if y is None:
            out.append(f"{where}.{name}: removed")
        elif x is None:
            out.append(f"{where}.{name}: added ({_version(y, versions)})")
        elif x != y:
            if x.id != y.id:
                out.append(f"{where}.{name}: {_version(x, versions)} -> {_version(y, versions)}")
            plain_x, plain_y = objects.FileReference(), objects.FileReference()
            plain_x.CopyFrom(x)
            plain_y.CopyFrom(y)
            plain_x.id = plain_y.id = ""
            _diff(plain_x, plain_y, f"{where}.{name}.", out, versions)


def _version(ref: objects.FileReference, versions: dict[str, tuple[str, int]]) -> str:
    if ref.id in versions:
        return f"version {versions[ref.id][1]}"
    return "new content, stored at deploy"


def _value(field: object, value: object, versions: dict[str, tuple[str, int]]) -> str:
    """A value as people read it: an enum by its name, a duration in seconds."""
    if isinstance(value, Duration):
        return f"{value.ToNanoseconds() / 1e9:g}s"
    if isinstance(value, objects.FileReference):
        return f"{value.name} ({_version(value, versions)})"
    if isinstance(value, Message):
        text = " ".join(str(value).split())
        return "{" + (text if len(text) <= 60 else text[:57] + "...") + "}"
    enum = getattr(field, "enum_type", None)
    if enum is not None and isinstance(value, int) and value in enum.values_by_number:
        return str(enum.values_by_number[value].name)
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    text = str(value).replace("\n", " ").strip()
    return text if len(text) <= 60 else text[:57] + "..."
