"""What the dashboard shows, as JSON-ready rows: pure functions of a store view, the load figures
and the time (no I/O, no event loop).

Rows carry names, states and figures only: never a spec's environment, a command or a secret's
content, and `secrets()` (names and versions) is served to operators and admins only. Times are
unix seconds (the page shows them as "3s ago"); load series are per second.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from typing import Any

from podium.manager.store import Change, ReadTx
from podium.rules import autoscale
from podium.rules.names import task_name
from podium.rules.taskstate import is_live
from podium.v1 import control, objects

Row = dict[str, Any]
US = objects.UpdateStatus
RUNNING = objects.TASK_STATE_RUNNING


def _name(value: int, enum: Any, prefix: str) -> str:
    return str(enum.Name(value)).removeprefix(prefix).lower().replace("_", " ")


def task_state(value: int) -> str:
    return _name(value, objects.TaskState, "TASK_STATE_")


def node_state(value: int) -> str:
    return _name(value, objects.NodeStatus.State, "STATE_").replace(" ", "-")


def _seconds(ts: Any) -> float:
    """A Timestamp as unix seconds (0: unset)."""
    return float(ts.ToNanoseconds() / 1e9) if ts.seconds or ts.nanos else 0.0


def node_names(view: ReadTx) -> dict[str, str]:
    return {n.id: n.description.name for n in view.nodes()}


def nodes(view: ReadTx, load: control.GetLoadResponse,
          reported_ago: Callable[[str], float | None]) -> list[Row]:
    """Every node with its state, capacity and latest load (cpu cores and memory used of the
    host's total); `reported_ago(node_id)`: seconds since its last load report (None: never)."""
    latest = {n.node_id: n.latest for n in load.nodes}
    live: dict[str, int] = {}
    for task in view.tasks():
        if task.node_id and is_live(task):
            live[task.node_id] = live.get(task.node_id, 0) + 1
    rows = []
    for node in view.nodes():
        figures = latest.get(node.id)
        state = node_state(node.status.state)
        if node.status.state == objects.NodeStatus.STATE_READY and \
                node.status.engine_unresponsive:
            state_text = f"{state}, engine not answering"
        else:
            state_text = state
        rows.append({
            "id": node.id,
            "name": node.description.name,
            "state": state,
            "state_text": state_text,
            "availability": _name(node.spec.availability, objects.NodeSpec.Availability,
                                  "AVAILABILITY_"),
            "addr": node.status.addr,
            "message": node.status.message,
            "labels": dict(sorted(node.description.labels.items())),
            "engine": node.description.engine_version,
            "cpus": node.description.capacity.nano_cpus / 1e9,
            "memory_bytes": node.description.capacity.memory_bytes,
            "tasks": live.get(node.id, 0),
            "cpu_used": figures.cpu_cores_used if figures is not None else None,
            "cpu_total": figures.cpu_cores_total if figures is not None else None,
            "memory_used": figures.memory_used_bytes if figures is not None else None,
            "memory_total": figures.memory_total_bytes if figures is not None else None,
            "reported_ago": reported_ago(node.id),
        })
    return sorted(rows, key=lambda r: (r["name"], r["id"]))


def update_row(service: objects.Service) -> Row:
    status = service.update_status
    state = _name(status.state, US.State, "STATE_")
    progress = f"{status.done}/{status.total}" if status.total else ""
    return {
        "state": state,
        "text": "" if status.state == US.STATE_NONE else f"{state} {progress}".strip(),
        "message": status.message,
        "from_version": status.from_version,
        "to_version": status.to_version,
        "completed": _seconds(status.completed),
    }


def autoscale_row(service: objects.Service) -> Row | None:
    """The policy's bounds and where the autoscaler stands: the count it wants, its last
    decision and when, why it holds, and each target beside its current figure."""
    if not autoscale.enabled(service.spec):
        return None
    policy, status = autoscale.settings(service.spec.autoscale), service.autoscale_status
    reported = {m.name: m for m in status.metrics}
    targets = []
    for name, target in policy.targets.items():
        metric = reported.get(name)
        targets.append({
            "name": autoscale.TARGETS[name][0],
            "target": autoscale.show(name, target),
            "current": autoscale.show(name, metric.current) if metric is not None else None,
            "partial": bool(metric and metric.partial),
        })
    return {
        "min": policy.min,
        "max": policy.max,
        "replicas": service.spec.replicas,
        "desired": status.desired or None,
        "last_decision": status.last_decision,
        "last_time": _seconds(status.last_time),
        "from_replicas": status.from_replicas,
        "to_replicas": status.to_replicas,
        "holding": status.holding,
        "at_capacity": status.at_capacity,
        "targets": targets,
    }


def services(view: ReadTx, fill: Callable[[objects.Service], None]) -> list[Row]:
    """Every service with its replicas (running, ready, desired), its update and its
    autoscaling; `fill` adds the autoscaler's current figures to a copy of a service."""
    rows = []
    for stored in view.services():
        service = objects.Service()
        service.CopyFrom(stored)  # fill() writes into it: never into the store's object
        fill(service)
        spec = service.spec
        live = [t for t in view.tasks_of_service(service.id) if is_live(t) and not t.canary]
        running = [t for t in live if t.status.state == RUNNING]
        glob = spec.mode == objects.ServiceSpec.MODE_GLOBAL
        rows.append({
            "id": service.id,
            "name": spec.name,
            "stack": spec.stack,
            "mode": "global" if glob else "replicated",
            "image": spec.container.image,
            "desired": len(live) if glob else spec.replicas,
            "running": len(running),
            "ready": sum(1 for t in running if t.status.ready),
            "version": service.spec_version,
            "ports": [f"{p.published_port or '*'}->{p.target_port}" for p in spec.ports],
            "update": update_row(service),
            "autoscale": autoscale_row(service),
            "updated": _seconds(service.meta.updated),
        })
    return sorted(rows, key=lambda r: r["name"])


def tasks(view: ReadTx, load: control.GetLoadResponse) -> list[Row]:
    """Every task the store keeps (the live ones and each slot's recent history), with its
    state, health, restarts and latest load."""
    names = node_names(view)
    figures = {t.task_id: t for t in load.tasks}
    rows = []
    for task in view.tasks():
        status = task.status
        found = figures.get(task.id)
        has_figures = found is not None and found.HasField("latest")
        rows.append({
            "id": task.id,
            "name": task_name(task, names),
            "service": task.service_name,
            "slot": task.slot,
            "node": names.get(task.node_id, task.node_id),
            "live": is_live(task),
            "state": task_state(status.state),
            "desired": task_state(task.desired_state),
            "health": _name(status.health, objects.Health, "HEALTH_"),
            "ready": status.ready,
            "restarts": status.restarts,
            "message": _said(status, task_state(status.state)),
            "since": _seconds(status.timestamp),
            "version": task.spec_version,
            "cpu": found.latest.cpu_cores if has_figures and found is not None else None,
            "memory": found.latest.memory_bytes if has_figures and found is not None else None,
        })
    return sorted(rows, key=lambda r: (r["service"], not r["live"], r["slot"], r["node"],
                                       -r["since"]))


def _said(status: objects.TaskStatus, state: str) -> str:
    """A task's error or message, unless it only repeats its state ("running", "assigned to
    node-a")."""
    said = status.err or status.message
    return "" if said.startswith(state) else said


def secrets(view: ReadTx) -> list[Row]:
    """Secrets and configs by name: their versions (number and time) and the services that
    use each name. Never their content, nor its digest."""
    using: dict[str, list[str]] = {}
    for service in view.services():
        container = service.spec.container
        for ref in list(container.secrets) + list(container.configs):
            using.setdefault(ref.id, []).append(service.spec.name)
    grouped: dict[tuple[str, str], Row] = {}
    for secret in view.secrets():
        kind = "config" if secret.spec.kind == objects.SecretSpec.KIND_CONFIG else "secret"
        row = grouped.setdefault((kind, secret.spec.name), {
            "name": secret.spec.name, "kind": kind, "versions": [], "used_by": []})
        row["versions"].append({"version": secret.version,
                                "created": _seconds(secret.meta.created)})
        row["used_by"] = sorted(set(row["used_by"]) | set(using.get(secret.id, [])))
    for row in grouped.values():
        row["versions"].sort(key=lambda v: v["version"])
    return [grouped[k] for k in sorted(grouped, key=lambda k: (k[0] == "config", k[1]))]


def load_series(view: ReadTx, load: control.GetLoadResponse) -> list[Row]:
    """Per service, its cpu (cores) and memory (bytes) over the LoadBook's history, one point
    per second, and its mesh traffic now. Agents report a task's figures when they change
    and every few periods otherwise, so each task's last figure holds until its next one; a
    task counts from its first figure on (its history ends with it)."""
    samples: dict[str, list[list[tuple[int, float, int]]]] = {}
    traffic: dict[str, list[float]] = {}
    for item in load.tasks:
        task = view.get_task(item.task_id)
        if task is None:
            continue
        flow = traffic.setdefault(task.service_name, [0.0, 0.0])
        flow[0] += item.requests_per_second
        flow[1] += item.connections
        points = sorted((int(s.time.seconds), s.cpu_cores, s.memory_bytes)
                        for s in item.history)
        if points:
            samples.setdefault(task.service_name, []).append(points)
    rows = []
    for name in sorted(traffic):
        series = samples.get(name, [])
        rows.append({"name": name, "points": _sum_steps(series),
                     "requests_per_second": round(traffic[name][0], 2),
                     "connections": int(traffic[name][1])})
    return rows


def _sum_steps(series: Iterable[list[tuple[int, float, int]]]) -> list[list[float]]:
    """[[t, cpu, memory], ...]: at each second any series has a point, the sum over the series
    of their last point at or before it."""
    series = list(series)
    seconds = sorted({t for points in series for t, _, _ in points})
    times = [[t for t, _, _ in points] for points in series]
    out: list[list[float]] = []
    for second in seconds:
        cpu, memory = 0.0, 0
        for points, at in zip(series, times, strict=True):
            i = bisect.bisect_right(at, second) - 1
            if i >= 0:
                cpu += points[i][1]
                memory += points[i][2]
        out.append([second, round(cpu, 4), memory])
    return out


def event_row(change: Change, names: dict[str, str], at: float) -> Row | None:
    """One line of the event stream for a change to a node, service, task or secret (a
    secret's name and version only); None for the kinds the dashboard does not show."""
    obj = change.obj
    row: Row = {"time": at, "kind": change.kind, "action": change.action, "id": obj.id,
                "actor": change.actor}
    if isinstance(obj, objects.Node):
        row["name"] = obj.description.name
        row["text"] = f"{node_state(obj.status.state)}" + (
            f" ({obj.status.message})" if obj.status.message else "")
    elif isinstance(obj, objects.Service):
        row["name"] = obj.spec.name
        update = update_row(obj)
        text = f"v{obj.spec_version}, {obj.spec.replicas} replicas" \
            if obj.spec.mode == objects.ServiceSpec.MODE_REPLICATED else f"v{obj.spec_version}"
        row["text"] = text + (f", {update['text']}" if update["text"] else "")
    elif isinstance(obj, objects.Task):
        row["name"] = task_name(obj, names)
        node, state = names.get(obj.node_id, ""), task_state(obj.status.state)
        said = _said(obj.status, state)
        row["text"] = state + (f" on {node}" if node else "") + (f" ({said})" if said else "")
    elif isinstance(obj, objects.Secret):
        kind = "config" if obj.spec.kind == objects.SecretSpec.KIND_CONFIG else "secret"
        row["kind"] = kind
        row["name"] = obj.spec.name
        row["text"] = f"version {obj.version}"
    else:
        return None
    return row
