"""How a service's tasks are replaced when its spec changes: the defaults of `update_config`,
`rollback_config` and `x-podium-canary` (one set for the Compose parser, which writes them into
the spec, and the manager, which applies them to a spec whose caller left them out), the Compose
spelling of their values, what the Control API refuses in them (`config_problem`), which spec
changes replace tasks, and what changed between two specs.

Podium's defaults differ from Swarm's where Swarm's are unsafe: a failed update rolls back
(Swarm pauses), and a task is started before the one it replaces is stopped wherever the
service's ports allow two tasks side by side (Swarm stops first).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message

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

US = objects.UpdateStatus
# States in which the updater has work to do.
ACTIVE = (US.STATE_UPDATING, US.STATE_ROLLING_BACK, US.STATE_CANARY)
# An update toward a new version that has not ended: a failure goes back to where it started.
UNFINISHED = (US.STATE_UPDATING, US.STATE_CANARY, US.STATE_PAUSED)
# Every state but the settled ones (none, completed, rolled back).
UNSETTLED = (*UNFINISHED, US.STATE_ROLLING_BACK, US.STATE_ROLLBACK_PAUSED)

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


def _duration_problem(duration: Duration, where: str) -> str | None:
    seconds, nanos = duration.seconds, duration.nanos
    # google.protobuf.Duration's own rules: one sign, |nanos| below a second, 10,000 years.
    if abs(nanos) > 999_999_999 or seconds * nanos < 0 or abs(seconds) > 315_576_000_000:
        return (f"{where} (seconds={seconds}, nanos={nanos}): not a valid "
                "google.protobuf.Duration")
    if seconds < 0 or nanos < 0:
        return f"{where} {duration.ToNanoseconds() / 1e9:g}s: expected a duration >= 0"
    return None


def _names(values: Sequence[int]) -> str:
    return " or ".join(UC.FailureAction.Name(v) for v in values)


def _config_problem(config: objects.UpdateConfig, where: str, *, rollback: bool) -> str | None:
    action = config.failure_action
    if rollback and action == UC.FAILURE_ACTION_ROLLBACK:
        # Also what a caller who left the field out sends (it is the field's zero value).
        return (f"{where}.failure_action FAILURE_ACTION_ROLLBACK: a rollback is never rolled "
                f"back: expected {_names(list(ROLLBACK_FAILURE_ACTIONS.values()))}")
    if action not in FAILURE_ACTIONS.values():
        allowed = ROLLBACK_FAILURE_ACTIONS if rollback else FAILURE_ACTIONS
        return f"{where}.failure_action {action}: expected {_names(list(allowed.values()))}"
    if config.order not in UC.Order.values():
        orders = " or ".join(UC.Order.keys())
        return f"{where}.order {config.order}: expected {orders}"
    ratio = config.max_failure_ratio
    if math.isnan(ratio) or not 0 <= ratio <= 1:
        return f"{where}.max_failure_ratio {ratio}: expected a number from 0 to 1"
    for key in ("delay", "monitor", "healthy_deadline"):
        if problem := _duration_problem(getattr(config, key), f"{where}.{key}"):
            return problem
    return None


def config_problem(spec: objects.ServiceSpec) -> str | None:
    """What is wrong with `spec`'s update_config, rollback_config or canary, naming the field
    and what is accepted ("spec.update_config.max_failure_ratio 1.5: expected a number from 0
    to 1"), or None. The Control API refuses such a spec; the Compose parser never writes one.
    A rollback_config that is given must say pause or continue: its failure_action's zero value
    means rollback, and a rollback is never rolled back."""
    for key in ("update_config", "rollback_config"):
        if spec.HasField(key):  # left out: the defaults apply
            problem = _config_problem(getattr(spec, key), f"spec.{key}",
                                      rollback=key == "rollback_config")
            if problem:
                return problem
    canary = spec.canary
    if problem := _duration_problem(canary.auto_promote_after, "spec.canary.auto_promote_after"):
        return problem
    if canary.count and spec.mode == objects.ServiceSpec.MODE_GLOBAL:
        return (f"spec.canary.count {canary.count}: a global service (one task per node) has "
                "no canaries: expected 0")
    if canary.count > spec.replicas and spec.mode == objects.ServiceSpec.MODE_REPLICATED:
        return f"spec.canary.count {canary.count}: at most spec.replicas ({spec.replicas})"
    return None


# Fields of a ServiceSpec that do not change what its tasks run: changing only these makes no
# new version and replaces no task.
NOT_TASK_FIELDS = ("replicas", "update_config", "rollback_config", "canary", "autoscale")


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
    """What changed from `old` to `new`, for people, by field path: "container.image web:1 ->
    web:2; container.env.VERSION 1 -> 2; container.stop_grace_period 10s -> 30s; probe added"
    (the first `limit` changes, then how many more)."""
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


def _shown(field: object, value: object) -> str:
    """A scalar as people read it: an enum by its name."""
    enum = getattr(field, "enum_type", None)
    if enum is not None and isinstance(value, int) and value in enum.values_by_number:
        return str(enum.values_by_number[value].name)
    return _short(value)


def _diff(old: Message, new: Message, path: str, out: list[str]) -> None:
    for field in old.DESCRIPTOR.fields:
        name = field.name
        a, b = getattr(old, name), getattr(new, name)
        where = f"{path}{name}"
        if field.message_type is not None and field.has_presence:  # one message, maybe unset
            had, has = old.HasField(name), new.HasField(name)
            if had == has and a == b:  # equal contents but one unset is still a change
                continue
            if isinstance(a, Duration):
                before = f"{a.ToNanoseconds() / 1e9:g}s" if had else "unset"
                after = f"{b.ToNanoseconds() / 1e9:g}s" if has else "unset"
                out.append(f"{where} {before} -> {after}")
            elif had != has:
                out.append(f"{where} {'added' if has else 'removed'}")
            else:
                _diff(a, b, where + ".", out)
            continue
        if a == b:
            continue
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
        else:
            out.append(f"{where} {_shown(field, a)} -> {_shown(field, b)}")
