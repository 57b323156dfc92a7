"""What the CLI shows of nodes, services and tasks: one flat row per object,
printed as an aligned table or, with `-o json`, as a JSON list of the same rows."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from podium.rules import autoscale, units
from podium.rules import update as update_rules
from podium.rules.names import task_name
from podium.rules.routing import in_rotation, ingress_ports
from podium.rules.taskstate import is_live
from podium.v1 import control, objects

Row = dict[str, Any]
_NODE_READY = objects.NodeStatus.STATE_READY


def enum_name(value: int, enum: Any, prefix: str) -> str:
    return str(enum.Name(value)).removeprefix(prefix).lower()


def task_state(value: int) -> str:
    return enum_name(value, objects.TaskState, "TASK_STATE_")


def node_state(value: int) -> str:
    """ready, suspect, agent-down, down, unknown."""
    return enum_name(value, objects.NodeStatus.State, "STATE_").replace("_", "-")


def node_state_text(node: objects.Node, now: float | None = None) -> str:
    """What the table's STATE column shows: the state, what keeps a ready node from taking new
    tasks besides its availability, and how long a held node's tasks stay put."""
    state = node_state(node.status.state)
    if node.status.state == _NODE_READY and node.status.engine_unresponsive:
        return f"{state}, engine not answering"
    if node.status.state == objects.NodeStatus.STATE_AGENT_DOWN and node.status.HasField(
            "held_until"):
        left = max(0.0, node.status.held_until.ToNanoseconds() / 1e9 - (now or time.time()))
        return f"{state} (tasks held {left:.0f}s)"
    return state


def ago(ts_seconds: float, now: float | None = None) -> str:
    if ts_seconds <= 0:
        return ""
    delta = max(0.0, (now or time.time()) - ts_seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if delta >= size:
            return f"{int(delta // size)}{unit} ago"
    return f"{int(delta)}s ago"


def port_text(p: objects.PortBinding) -> str:
    proto = "udp" if p.protocol == objects.PortConfig.PROTOCOL_UDP else "tcp"
    return f"{p.host_ip or '0.0.0.0'}:{p.published_port}->{p.target_port}/{proto}"


def spec_port_text(p: objects.PortConfig) -> str:
    proto = "udp" if p.protocol == objects.PortConfig.PROTOCOL_UDP else "tcp"
    published = str(p.published_port) if p.published_port else "*"
    return f"{published}->{p.target_port}/{proto}"


def task_row(task: objects.Task, node_names: dict[str, str]) -> Row:
    status = task.status
    return {
        "id": task.id,
        "name": task_name(task, node_names),
        "service": task.service_name,
        "slot": task.slot,
        "node": node_names.get(task.node_id, task.node_id),
        "desired": task_state(task.desired_state),
        "state": task_state(status.state),
        "since": status.timestamp.ToNanoseconds() / 1e9 if status.HasField("timestamp") else 0,
        "message": status.message,
        "error": status.err,
        "exit_code": status.exit_code,
        "attempt": task.attempt,
        "container_id": status.container_id,
        "ports": [port_text(p) for p in status.ports if ":" not in (p.host_ip or "")],
        "health": enum_name(status.health, objects.Health, "HEALTH_"),
        "ready": status.ready,
        "restarts": status.restarts,
        "history": [
            {"time": e.time.ToNanoseconds() / 1e9, "kind": e.kind, "message": e.message}
            for e in status.history
        ],
    }


def add_task_load(row: Row, load: Any | None) -> None:
    """Adds cpu and memory columns from a GetLoadResponse.Task (None: not reported)."""
    row["connections"] = load.connections if load is not None else 0
    row["cpu_cores"] = round(load.latest.cpu_cores, 3) if load is not None else None
    row["memory_bytes"] = load.latest.memory_bytes if load is not None else None
    row["memory_share"] = round(load.latest.memory_share, 3) if load is not None else None
    row["cpu"] = f"{row['cpu_cores']:.2f}" if load is not None else ""
    row["mem"] = units.size(row["memory_bytes"]) if load is not None else ""


def add_routing(row: Row, task: objects.Task, node: objects.Node | None) -> None:
    """Whether the mesh sends the task new connections, and how many it has open."""
    meshed = bool(ingress_ports(task.spec))
    row["in_rotation"] = meshed and in_rotation(task, node)
    row["routing"] = ("in" if row["in_rotation"] else "out") if meshed else ""
    connections = row.get("connections", 0)
    row["routing_text"] = f"{row['routing']} ({connections} conn)" if meshed else ""


US = objects.UpdateStatus
# How long the UPDATE column keeps saying "completed" after an update ended well.
COMPLETED_SHOWN_S = 600.0


def update_state(value: int) -> str:
    """none, updating, paused, completed, rolling back, rollback paused, rolled back, canary."""
    return enum_name(value, US.State, "STATE_").replace("_", " ")


def update_text(service: objects.Service, tasks: Sequence[objects.Task] = (),
                now: float | None = None) -> str:
    """Where the service's update stands, in a few words for a table cell ("updating 2/6",
    "canary 1/2 healthy", "rolled back"); "" when there is none to speak of (never updated, or
    completed more than COMPLETED_SHOWN_S ago). `tasks` (the service's) count healthy canaries."""
    status = service.update_status
    state = status.state
    progress = f"{status.done}/{status.total}"
    glob = service.spec.mode == objects.ServiceSpec.MODE_GLOBAL
    if (state == US.STATE_UPDATING and service.spec.canary.count and not status.promoted
            and not glob):  # global services update without canaries
        healthy = sum(1 for t in tasks if t.canary and is_live(t) and t.spec_version ==
                      status.to_version and t.status.state == objects.TASK_STATE_RUNNING
                      and t.status.ready)
        return f"canary {healthy}/{service.spec.canary.count} healthy"
    if state in (US.STATE_UPDATING, US.STATE_ROLLING_BACK):
        return f"{update_state(state)} {progress}"
    if state == US.STATE_CANARY:
        return f"canary {service.spec.canary.count} healthy"
    if state == US.STATE_COMPLETED:
        ended = status.completed.ToNanoseconds() / 1e9 if status.HasField("completed") else 0
        recent = (now or time.time()) - ended < COMPLETED_SHOWN_S
        return "completed" if recent else ""
    if state == US.STATE_NONE:
        return ""
    return update_state(state)


def update_summary(service: objects.Service, tasks: Sequence[objects.Task] = ()) -> Row:
    """The update state with readable names, for `inspect` and `-o json`."""
    status = service.update_status
    return {
        "state": update_state(status.state),
        "text": update_text(service, tasks),
        "message": status.message,
        "from_version": status.from_version,
        "to_version": status.to_version,
        "done": status.done,
        "total": status.total,
        "manual": status.manual,
        "version": service.spec_version,
    }


def service_row(service: objects.Service, tasks: Sequence[objects.Task],
                now: float | None = None) -> Row:
    spec = service.spec
    live = [t for t in tasks if is_live(t) and not t.canary]
    running = sum(1 for t in live if t.status.state == objects.TASK_STATE_RUNNING)
    glob = spec.mode == objects.ServiceSpec.MODE_GLOBAL
    return {
        "id": service.id,
        "name": spec.name,
        "mode": "global" if glob else "replicated",
        "running": running,
        "desired": len(live) if glob else spec.replicas,
        "image": spec.container.image,
        "ports": [spec_port_text(p) for p in spec.ports],
        "version": service.spec_version,
        "update": update_text(service, tasks, now),
        "update_state": update_state(service.update_status.state),
        "update_message": service.update_status.message,
        "autoscale": autoscale_summary(service, now),
        "autoscale_text": autoscale_text(service),
        "scaled": scaled_text(service, now),
    }


# -- autoscaling -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Figure:
    """One autoscale target next to its current value per ready replica (None: not known)."""

    name: str
    target: float
    current: float | None
    partial: bool  # known for some ready replicas only


def figures(service: objects.Service) -> list[Figure]:
    """The policy's targets in podium.rules.autoscale.TARGETS order, each with the current value
    the manager reported on this read (its autoscale_status.metrics), if any."""
    reported = {m.name: m for m in service.autoscale_status.metrics}
    result = []
    for name, target in autoscale.settings(service.spec.autoscale).targets.items():
        metric = reported.get(name)
        result.append(Figure(name, target, metric.current if metric else None,
                             bool(metric and metric.partial)))
    return result


def _figure(name: str, value: float | None) -> str:
    """A value without its unit: 45%, 120; "-" when not known."""
    if value is None:
        return "-"
    return autoscale.show(name, value) if autoscale.TARGETS[name][1] else units.number(value)


def autoscale_text(service: objects.Service) -> str:
    """The AUTOSCALE cell: bounds and each target as current/target, "~" before a value known
    for some replicas only: "2..10 cpu 45%/60%, req/s ~120/300, at capacity"; "" when the
    service is not autoscaled."""
    if not autoscale.enabled(service.spec):
        return ""
    policy = service.spec.autoscale
    parts = [f"{autoscale.TARGETS[f.name][0]} {'~' if f.partial else ''}"
             f"{_figure(f.name, f.current)}/{_figure(f.name, f.target)}"
             for f in figures(service)]
    if service.autoscale_status.at_capacity:
        parts.append("at capacity")
    return f"{policy.min}..{policy.max} " + ", ".join(parts)


def _decided(status: objects.AutoscaleStatus) -> float:
    return status.last_time.ToNanoseconds() / 1e9 if status.HasField("last_time") else 0.0


def scaled_text(service: objects.Service, now: float | None = None) -> str:
    """The SCALED cell: the last change of the count and when ("2→5 3m ago"), else ""."""
    status = service.autoscale_status
    if not autoscale.enabled(service.spec) or not status.last_decision:
        return ""
    return f"{status.from_replicas}→{status.to_replicas} {ago(_decided(status), now)}".rstrip()


def _duration(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{units.number(seconds)}s"


def autoscale_summary(service: objects.Service, now: float | None = None) -> Row | None:
    """The policy and where it stands, for `inspect` and `-o json`: bounds, each target next to
    its current value, the tuning in effect (what the file leaves out: the defaults of
    podium.rules.autoscale, marked so), why the count holds, whether it is at capacity, and the
    last decision with its time. None when the service is not autoscaled."""
    if not autoscale.enabled(service.spec):
        return None
    policy, status = service.spec.autoscale, service.autoscale_status
    settings = autoscale.settings(policy)

    def tuned(text: str, given: bool) -> str:
        return text if given else f"{text} (default)"

    def step(value: int) -> str:
        return str(value) if value else "no limit"

    decided = _decided(status)
    targets = []
    for f in figures(service):
        current = "not reported" if f.current is None else autoscale.show(f.name, f.current)
        if f.partial:
            current += " (figures missing for some replicas)"
        targets.append({"name": f.name, "target": autoscale.show(f.name, f.target),
                        "current": current})
    return {
        "min": settings.min,
        "max": settings.max,
        "replicas": service.spec.replicas,
        "desired": status.desired or None,  # read-time only: 0 is "not reported"
        "targets": targets,
        "tuning": {
            "tolerance": tuned(f"{units.number(settings.tolerance * 100)}%",
                               policy.tolerance > 0),
            "scale_down_window": tuned(_duration(settings.scale_down_window_s),
                                       policy.HasField("scale_down_window")),
            "max_step_up": tuned(step(settings.max_step_up), policy.max_step_up > 0),
            "max_step_down": tuned(step(settings.max_step_down), policy.max_step_down > 0),
        },
        "holding": status.holding,
        "at_capacity": status.at_capacity,
        "last_decision": status.last_decision,
        "last_time": (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(decided))
                      + f" ({ago(decided, now)})" if decided else ""),
    }


def history_rows(service: objects.Service) -> list[Row]:
    """The service's kept versions, oldest first, the one it runs marked `current`."""
    return [
        {
            "version": kept.version,
            "time": kept.time.ToNanoseconds() / 1e9 if kept.HasField("time") else 0,
            "change": kept.change,
            "image": kept.spec.container.image,
            "current": kept.version == service.spec_version,
        }
        for kept in service.versions
    ]


def node_row(node: objects.Node, task_count: int) -> Row:
    desc = node.description
    return {
        "id": node.id,
        "name": desc.name,
        "state": node_state(node.status.state),
        "state_text": node_state_text(node),
        "held_until": (node.status.held_until.ToNanoseconds() / 1e9
                       if node.status.HasField("held_until") else None),
        "availability": enum_name(
            node.spec.availability, objects.NodeSpec.Availability, "AVAILABILITY_"
        ),
        "addr": node.status.addr,
        "cpus": desc.capacity.nano_cpus / 1e9,
        "memory_bytes": desc.capacity.memory_bytes,
        "tasks": task_count,
        "engine": desc.engine_version,
        "labels": dict(desc.labels),
        "message": node.status.message,
        "engine_answering": not node.status.engine_unresponsive,
        "engine_error": node.status.engine_error,
    }


def secret_row(secret: objects.Secret, *, content: bool = False) -> Row:
    """A secret's or config's version. `size` for configs only (the manager sends no secret's
    data); `content` (configs only) adds the text."""
    row: Row = {
        "id": secret.id,
        "name": secret.spec.name,
        "version": secret.version,
        "digest": secret.spec.digest,
        "created": ago(secret.meta.created.ToNanoseconds() / 1e9),
        "labels": dict(secret.spec.labels),
    }
    if secret.spec.kind == objects.SecretSpec.KIND_CONFIG:
        row["size"] = len(secret.spec.data)
        if content:
            row["content"] = secret.spec.data.decode(errors="replace")
    return row


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def table(rows: Sequence[Row], columns: Sequence[tuple[str, str]]) -> str:
    """Aligned columns; `columns` pairs a header with a row key."""
    cells = [[h for h, _ in columns]] + [[_cell(r[k]) for _, k in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = [
        "   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def to_json(rows: Any, *, indent: int | None = 2) -> str:
    import json  # only for -o json

    return json.dumps(rows, indent=indent, sort_keys=True)


_PLAN = control.ServicePlan


def plan_lines(plans: Sequence[control.ServicePlan],
               specs: Sequence[objects.ServiceSpec]) -> list[str]:
    """`podium deploy --plan`: per service a headline, its changed fields and its new tasks:

        web: update (new version) - tasks replaced 3 (update_config: parallelism 1, start-first)
          container.image: podium/web:1 -> podium/web:2
          new tasks: web.1 -> node-a, web.2 -> node-b, web.3 -> node-a
        db: create
          new tasks: db.1 -> (pending: no node has 64 GiB memory free (2 nodes))
        cache: unchanged
    """
    by_name = {spec.name: spec for spec in specs}
    lines: list[str] = []
    for plan in plans:
        head = f"{plan.name}: {_plan_action(plan)}"
        replaced = len(plan.replaced_tasks)
        if plan.action == _PLAN.ACTION_UPDATE:
            head += f" - tasks replaced {replaced}"
            if (spec := by_name.get(plan.name)) is not None:
                settings = update_rules.plan(spec)
                order = "start-first" if settings.start_first else "stop-first"
                head += (f" (update_config: parallelism {settings.parallelism or 'all'}, "
                         f"{order})")
        elif replaced:
            head += f" - tasks removed {replaced}"
        lines.append(head)
        lines.extend(f"  {change}" for change in plan.changes)
        if plan.new_tasks:
            reasons = iter(plan.pending)
            placed = []
            for task in plan.new_tasks:
                name = f"{plan.name}.{task.slot or task.node_name or task.node_id[:12]}"
                where = task.node_name or task.node_id
                if not task.node_id:
                    where = f"(pending: {next(reasons, 'no node takes it')})"
                placed.append(f"{name} -> {where}")
            lines.append("  new tasks: " + ", ".join(placed))
    return lines


def _plan_action(plan: control.ServicePlan) -> str:
    return {
        _PLAN.ACTION_CREATE: "create",
        _PLAN.ACTION_UPDATE: "update (new version)",
        _PLAN.ACTION_RECONFIGURE: "reconfigure (settings only)",
    }.get(plan.action, "unchanged")
