"""How a service's tasks are replaced when its spec changes: the defaults of `update_config`,
`rollback_config` and `x-podium-canary` (one set for the Compose parser, which writes them into
the spec, and the manager, which applies them to a spec whose caller left them out), the Compose
spelling of their values, which spec changes replace tasks, and what changed between two specs.

Podium's defaults differ from Swarm's where Swarm's are unsafe: a failed update rolls back
(Swarm pauses), and a task is started before the one it replaces is stopped wherever the
service's ports allow two tasks side by side (Swarm stops first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from podium.v1 import objects

PARALLELISM = 1
DELAY_S = 0.0
MONITOR_S = 5.0
MAX_FAILURE_RATIO = 0.0
# A new task that is not healthy this long after it was created counts as failed: an update
# never stalls forever (Swarm waits forever; Nomad's healthy_deadline is 5 minutes).
HEALTHY_DEADLINE_S = 300.0
# Specs kept per service (Kubernetes keeps 10 revisions, Nomad 6 versions, Swarm 1).
VERSIONS_KEPT = 10

UC = objects.UpdateConfig
FAILURE_ACTIONS = {
    "rollback": UC.FAILURE_ACTION_ROLLBACK,
    "pause": UC.FAILURE_ACTION_PAUSE,
    "continue": UC.FAILURE_ACTION_CONTINUE,
}
ORDERS = {"start-first": UC.ORDER_START_FIRST, "stop-first": UC.ORDER_STOP_FIRST}
# A rollback that fails is never rolled back in turn: its failure actions.
ROLLBACK_FAILURE_ACTIONS = {k: v for k, v in FAILURE_ACTIONS.items() if k != "rollback"}


def failure_action_name(value: int) -> str:
    return next((k for k, v in FAILURE_ACTIONS.items() if v == value), "rollback")


def order_name(value: int) -> str:
    return next((k for k, v in ORDERS.items() if v == value), "default")


@dataclass(frozen=True, slots=True)
class Plan:
    """The update or rollback settings in effect, with every default applied."""

    parallelism: int  # 0: all at once
    delay_s: float
    failure_action: int
    monitor_s: float
    max_failure_ratio: float
    start_first: bool
    healthy_deadline_s: float
    # Why the order is what it is, when Podium chose it ("host-mode port 80: stop-first").
    order_note: str = ""


def _seconds(d: object) -> float:
    return d.ToNanoseconds() / 1e9  # type: ignore[attr-defined, no-any-return]


def default_config(*, rollback: bool = False) -> objects.UpdateConfig:
    """The config written for a file that leaves the key (or some of its fields) out."""
    config = objects.UpdateConfig(
        parallelism=PARALLELISM,
        failure_action=UC.FAILURE_ACTION_PAUSE if rollback else UC.FAILURE_ACTION_ROLLBACK,
        max_failure_ratio=MAX_FAILURE_RATIO,
    )
    config.delay.FromNanoseconds(int(DELAY_S * 1e9))
    config.monitor.FromNanoseconds(int(MONITOR_S * 1e9))
    return config


def stop_first_reason(spec: objects.ServiceSpec) -> str:
    """Why two tasks of the service cannot run side by side on one node, or "": a host-mode
    port with a fixed number (one node binds it once), or a global service (one task per node)."""
    if spec.mode == objects.ServiceSpec.MODE_GLOBAL:
        return "a global service runs one task per node: stop-first, node by node"
    for port in spec.ports:
        if port.mode == objects.PortConfig.PUBLISH_MODE_HOST and port.published_port:
            return (f"host-mode port {port.published_port} cannot be bound twice on one node: "
                    "stop-first")
    return ""


def plan(spec: objects.ServiceSpec, *, rollback: bool = False) -> Plan:
    """The settings an update (or a rollback) of `spec` runs with."""
    config = spec.rollback_config if rollback else spec.update_config
    present = spec.HasField("rollback_config" if rollback else "update_config")
    if not present:
        config = default_config(rollback=rollback)
    action = config.failure_action
    if rollback and action == UC.FAILURE_ACTION_ROLLBACK:
        action = UC.FAILURE_ACTION_PAUSE
    deadline = _seconds(config.healthy_deadline) or HEALTHY_DEADLINE_S
    why = stop_first_reason(spec)
    if why:
        start_first, note = False, why
    elif config.order == UC.ORDER_STOP_FIRST:
        start_first, note = False, ""
    else:
        start_first, note = True, ""
    return Plan(
        parallelism=config.parallelism,
        delay_s=_seconds(config.delay),
        failure_action=action,
        monitor_s=_seconds(config.monitor),
        max_failure_ratio=config.max_failure_ratio,
        start_first=start_first,
        healthy_deadline_s=deadline,
        order_note=note if config.order == UC.ORDER_START_FIRST or why else "",
    )


# Fields of a ServiceSpec that do not change what its tasks run: changing only these makes no
# new version and replaces no task.
NOT_TASK_FIELDS = ("replicas", "update_config", "rollback_config", "canary")


def task_spec(spec: objects.ServiceSpec) -> objects.ServiceSpec:
    """The spec without the fields that do not reach tasks."""
    copy = objects.ServiceSpec()
    copy.CopyFrom(spec)
    for field in NOT_TASK_FIELDS:
        copy.ClearField(field)
    return copy


def replaces_tasks(old: objects.ServiceSpec, new: objects.ServiceSpec) -> bool:
    return task_spec(old) != task_spec(new)


def changes(old: objects.ServiceSpec, new: objects.ServiceSpec, *, limit: int = 4) -> str:
    """What changed from `old` to `new`, for people: "image a -> b; env VERSION 1 -> 2"."""
    items: list[str] = []
    _diff(task_spec(old), task_spec(new), "", items)
    if not items:
        return "no change"
    shown = items[:limit]
    if len(items) > limit:
        shown.append(f"{len(items) - limit} more")
    return "; ".join(shown)


def _short(value: object) -> str:
    text = str(value).replace("\n", " ").strip()
    return text if len(text) <= 40 else text[:37] + "..."


def _diff(old: object, new: object, path: str, out: list[str]) -> None:
    from google.protobuf.message import Message

    assert isinstance(old, Message) and isinstance(new, Message)
    for field in old.DESCRIPTOR.fields:
        name = field.name
        a, b = getattr(old, name), getattr(new, name)
        if a == b:
            continue
        where = f"{path}{name}"
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            for key in sorted(set(a) | set(b)):
                if key not in b:
                    out.append(f"{where}.{key} removed")
                elif key not in a:
                    out.append(f"{where}.{key} = {_short(b[key])}")
                elif a[key] != b[key]:
                    out.append(f"{where}.{key} {_short(a[key])} -> {_short(b[key])}")
        elif not isinstance(a, str | bytes) and isinstance(a, Sequence):
            out.append(f"{where} changed")
        elif field.message_type is not None:
            _diff(a, b, where + ".", out)
        else:
            out.append(f"{where} {_short(a)!s} -> {_short(b)!s}")
