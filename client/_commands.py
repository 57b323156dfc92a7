"""The `podium` commands that talk to the manager, on podium.client.Client. Imported by
podium.client.cli only when such a command runs (it loads gRPC and protobuf)."""

from __future__ import annotations

import argparse
import contextlib
import pathlib
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf.message import Message

from podium.client import views
from podium.client._api import Client, ManagerUnreachable, NotFound, Unavailable
from podium.client._waits import Changes, Goal, wait_converged, wait_for
from podium.client.cli import CliError
from podium.rules import autoscale, units
from podium.rules import update as update_rules
from podium.rules.taskstate import has_finished, holds_resources, is_live
from podium.v1 import control, objects

RUNNING = objects.TASK_STATE_RUNNING
US = objects.UpdateStatus


def _plain(message: Message) -> dict[str, Any]:
    """The message as JSON-ready data, with the .proto's field names."""
    from google.protobuf import json_format  # only for inspect and -o json: it is slow to load

    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _emit(args: argparse.Namespace, rows: list[views.Row], columns: list[tuple[str, str]]) -> None:
    print(views.to_json(rows) if args.output == "json" else views.table(rows, columns))


def cmd_services(client: Client, args: argparse.Namespace) -> int:
    services = client.services()
    tasks = client.tasks()
    rows = [views.service_row(s, [t for t in tasks if t.service_id == s.id]) for s in services]
    for row in rows:
        row["replicas"] = f"{row['running']}/{row['desired']}"
    columns = [("ID", "id"), ("NAME", "name"), ("MODE", "mode"), ("REPLICAS", "replicas"),
               ("IMAGE", "image"), ("PORTS", "ports"), ("UPDATE", "update")]
    if any(row["autoscale"] for row in rows):  # only then: a narrower table for everyone else
        columns += [("AUTOSCALE", "autoscale_text"), ("SCALED", "scaled")]
    _emit(args, rows, columns)
    return 0


def cmd_ps(client: Client, args: argparse.Namespace) -> int:
    tasks = client.tasks(service=args.service or "")
    if not args.all:
        tasks = [
            t
            for t in tasks
            if is_live(t) or not has_finished(t) or t.status.err
        ]
    rows = _task_rows(client, tasks)
    now = time.time()
    last = ""
    for row, task in zip(rows, tasks, strict=True):
        row["current"] = f"{row['state']} {views.ago(row['since'], now)}".strip()
        history = not is_live(task)
        row["display"] = (" \\_ " if history and row["name"] == last else "") + row["name"]
        last = row["name"]
        row["detail"] = row["error"] or ("" if row["message"] == "running" else row["message"])
        if not row["detail"] and row["restarts"]:
            row["detail"] = f"last exit code {row['exit_code']}"
        row["health_text"] = "" if row["health"] == "none" else row["health"]
    _emit(
        args,
        rows,
        [
            ("ID", "id"),
            ("NAME", "display"),
            ("NODE", "node"),
            ("DESIRED", "desired"),
            ("CURRENT", "current"),
            ("HEALTH", "health_text"),
            ("RESTARTS", "restarts"),
            ("CPU", "cpu"),
            ("MEM", "mem"),
            ("ROUTING", "routing_text"),
            ("ERROR", "detail"),
            ("PORTS", "ports"),
        ],
    )
    return 0


def cmd_nodes(client: Client, args: argparse.Namespace) -> int:
    nodes = client.nodes()
    tasks = client.tasks()
    counts: dict[str, int] = {}
    for t in tasks:
        if holds_resources(t):
            counts[t.node_id] = counts.get(t.node_id, 0) + 1
    rows = [views.node_row(n, counts.get(n.id, 0)) for n in nodes]
    load = {n.node_id: n.latest for n in _load(client).nodes}
    for row in rows:
        row["memory"] = units.size(row["memory_bytes"])
        latest = load.get(row["id"])
        row["cpu_used_cores"] = round(latest.cpu_cores_used, 2) if latest else None
        row["memory_used_bytes"] = latest.memory_used_bytes if latest else None
        row["load"] = (
            f"{latest.cpu_cores_used:.2f} cpu, {units.size(latest.memory_used_bytes)}"
            if latest else ""
        )
    _emit(
        args,
        rows,
        [
            ("ID", "id"),
            ("NAME", "name"),
            ("STATE", "state_text"),
            ("AVAILABILITY", "availability"),
            ("ADDRESS", "addr"),
            ("CPUS", "cpus"),
            ("MEMORY", "memory"),
            ("LOAD", "load"),
            ("TASKS", "tasks"),
            ("ENGINE", "engine"),
        ],
    )
    return 0


def _replica_rows(client: Client, tasks: Sequence[objects.Task]) -> list[views.Row]:
    """Each live replica's state, health and routing, for `inspect SERVICE`."""
    tasks = [t for t in tasks if is_live(t)]
    return [{k: row[k] for k in ("id", "name", "node", "state", "health", "ready", "routing",
                                 "connections", "restarts")}
            for row in _task_rows(client, tasks)]


# How long `ps` and `nodes` wait for the load figures, which only the leading manager has: while
# managers elect a new leader they list what any manager reads, without them.
LOAD_WAIT_S = 2.0


def _load(client: Client) -> control.GetLoadResponse:
    try:
        return client.load(timeout=LOAD_WAIT_S)
    except (ManagerUnreachable, Unavailable):
        if len(client.addresses) == 1:
            raise
        return control.GetLoadResponse()


def _task_rows(client: Client, tasks: Sequence[objects.Task]) -> list[views.Row]:
    """Rows for `tasks` with their node names, load and routing state (one ListNodes, one
    GetLoad for all of them)."""
    nodes = {n.id: n for n in client.nodes()}
    names = {node_id: n.description.name for node_id, n in nodes.items()}
    load = {t.task_id: t for t in _load(client).tasks}
    rows = []
    for task in tasks:
        row = views.task_row(task, names)
        views.add_task_load(row, load.get(task.id))
        views.add_routing(row, task, nodes.get(task.node_id))
        rows.append(row)
    return rows


def cmd_inspect(client: Client, args: argparse.Namespace) -> int:
    getters: list[tuple[str, Callable[[str], Message]]] = [
        ("service", client.service), ("task", client.task), ("node", client.node)]
    for field, get in getters:
        try:
            found = get(args.ref)
        except NotFound:
            continue
        data = _plain(found)
        if field == "service":
            assert isinstance(found, objects.Service)
            tasks = client.tasks(service=found.id)
            data["replicas_status"] = _replica_rows(client, tasks)
            data["update"] = views.update_summary(found, tasks)
            if summary := views.autoscale_summary(found):
                data["autoscale"] = summary
        print(views.to_json({"kind": field, **data}))
        return 0
    raise CliError(f"no service, task or node {args.ref!r}", 2)


def cmd_deploy(client: Client, args: argparse.Namespace) -> int:
    # Imported here: the agent runs from this module too and needs no YAML parser.
    from podium.client.compose import SpecError, default_stack_name, read_stack

    path = pathlib.Path(args.file)
    stdin = args.file == "-"
    try:
        text = sys.stdin.read() if stdin else path.read_text()
    except OSError as err:
        raise CliError(f"{args.file}: {err.strerror}", 2) from None
    try:
        # From stdin, env_file paths start in the working directory. A file without name: or
        # --stack keeps its services' keys as names; the folder names its networks, volumes
        # and secrets (the working directory's, from stdin).
        stack = read_stack(
            text, source=args.file, stack=args.stack, profiles=args.profile,
            directory=pathlib.Path(".") if stdin else path.parent,
            fallback_stack=default_stack_name(pathlib.Path("./-") if stdin else path),
        )  # fmt: skip
    except SpecError as err:
        raise CliError(str(err), 2) from None
    for warning in stack.warnings:  # once, before the progress; on stderr, as stack deploy does
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    specs = stack.services
    if args.plan:
        return _plan(client, args, stack.files, specs)
    if stack.files:  # first: the services refer to the versions' ids
        from podium.client._compose_secrets import store

        try:
            store(client, stack.files, specs)
        except SpecError as err:
            raise CliError(f"{args.file}: {err}", 2) from None
    # The services this deploy changes share its id: should one fail and roll back, the
    # manager rolls the others back too.
    deploy_id = uuid.uuid4().hex
    goals = []
    for spec in specs:
        service, outcome = client.deploy(spec, deploy_id=deploy_id, force=args.force)
        goal = _deploy_goal(service, outcome, deploy_id)
        print(_deployed(service, outcome, goal), flush=True)
        if kept := _kept_count(spec, service):
            print(kept, flush=True)
        if goal is not None:
            goals.append(goal)
    if args.detach or not goals:
        return 0
    return wait_for(client, goals, args.timeout)


def _plan(client: Client, args: argparse.Namespace, files: list[Any],
          specs: list[objects.ServiceSpec]) -> int:
    """`deploy --plan`: what the deploy would do; stores nothing (secrets and configs
    included) and changes nothing."""
    from podium.client._compose_secrets import store
    from podium.client.compose import SpecError

    if args.force:
        raise CliError("--plan shows a deploy without --force; leave one of them out", 2)
    if files:
        try:
            store(client, files, specs, find_only=True)
        except SpecError as err:
            raise CliError(f"{args.file}: {err}", 2) from None
    for line in views.plan_lines(client.plan(specs), specs):
        print(line)
    return 0


def _deploy_goal(service: objects.Service, outcome: str, deploy_id: str) -> Goal | None:
    """What the deploy waits for: the update this deploy started (the manager's update status
    names its deploy id and new version); for a created service or a change that replaces no
    task, convergence. An unchanged service needs no wait, unless the update to the version
    it runs has not ended (a deploy run again follows it) or stands paused (it fails)."""
    status = service.update_status
    name = service.spec.name
    to_current = status.state != US.STATE_NONE and status.to_version == service.spec_version
    if outcome == "unchanged":
        return Goal(name, version=service.spec_version) if (
            to_current and status.state in update_rules.UNFINISHED) else None
    if outcome != "created" and to_current and status.deploy_id == deploy_id:
        return Goal(name, version=service.spec_version)
    return Goal(name)


def _deployed(service: objects.Service, outcome: str, goal: Goal | None) -> str:
    """The line a deploy prints per service: `created service web`, `updated service web:
    version 4 (image a -> b)`, `updated service web (forced): version 5`, `unchanged service
    web`."""
    verb, _, note = outcome.partition(" ")
    line = f"{verb} service {service.spec.name}" + (f" {note}" if note else "")
    if goal is not None and goal.version and verb == "updated":
        line += f": version {goal.version}"
        change = next((v.change for v in service.versions if v.version == goal.version), "")
        if change and not note:
            line += f" ({change})"
    return line


def _kept_count(spec: objects.ServiceSpec, service: objects.Service) -> str:
    """For an autoscaled service whose count the manager kept over the file's (UpdateService
    keeps the autoscaler's count): "web: autoscaled, 5 replicas kept (2..10)"; else "". The
    wait that follows reads the count from the manager, never from the file."""
    if not autoscale.enabled(service.spec) or service.spec.replicas == spec.replicas:
        return ""
    policy = service.spec.autoscale
    return (f"{service.spec.name}: autoscaled, {service.spec.replicas} replicas kept "
            f"({policy.min}..{policy.max})")


def cmd_scale(client: Client, args: argparse.Namespace) -> int:
    wanted = []
    for pair in args.pairs:
        name, eq, count = pair.partition("=")
        if not eq or not name or not count.isdigit():
            raise CliError(f"{pair!r}: expected SERVICE=REPLICAS, e.g. web=3", 2)
        wanted.append((name, int(count)))
    names = []
    for name, count in wanted:
        service = client.scale(name, count)
        print(f"{service.spec.name} scaled to {count}")
        names.append(service.spec.name)
    return 0 if args.detach else wait_converged(client, names, args.timeout)


def cmd_history(client: Client, args: argparse.Namespace) -> int:
    """podium history SERVICE: the versions the service kept, oldest first."""
    service = client.service(args.service)
    rows = views.history_rows(service)
    if args.output == "json":
        print(views.to_json(rows))
        return 0
    shown = [{
        "version": f"{row['version']}" + (" (current)" if row["current"] else ""),
        "time": (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["time"]))
                 if row["time"] else ""),
        "change": row["change"] or "-",
    } for row in rows]
    print(views.table(shown, [("VERSION", "version"), ("TIME", "time"), ("CHANGE", "change")]))
    return 0


def cmd_rollback(client: Client, args: argparse.Namespace) -> int:
    """podium rollback SERVICE [--to VERSION]: waits until it is ROLLED_BACK (exit 0) or the
    rollback pauses (exit 1)."""
    if args.to < 0:
        raise CliError(f"--to {args.to}: expected a version number (see `podium history "
                       f"{args.service}`)", 2)
    service = client.rollback(args.service, args.to)
    status = service.update_status
    name = service.spec.name
    if status.state != US.STATE_ROLLING_BACK or not status.manual:
        # The manager started nothing: the service already runs that version.
        print(f"{name}: already at version {service.spec_version}")
        return 0
    print(f"{name}: rolling back from version {status.from_version} to version "
          f"{status.to_version}", flush=True)
    if args.detach:
        return 0
    goal = Goal(name, version=status.to_version, rollback_from=status.from_version)
    return wait_for(client, [goal], args.timeout)


def cmd_promote(client: Client, args: argparse.Namespace) -> int:
    """podium promote SERVICE: waits until the update COMPLETED (exit 0) or failed (exit 1)."""
    service = client.promote(args.service)
    name = service.spec.name
    version = service.update_status.to_version or service.spec_version
    print(f"{name}: canaries promoted; updating the other tasks to version {version}",
          flush=True)
    if args.detach:
        return 0
    return wait_for(client, [Goal(name, version=version, promote=True)], args.timeout)


def cmd_rm(client: Client, args: argparse.Namespace) -> int:
    for ref in args.services:
        client.remove_service(ref)
        print(f"removed service {ref}")
    return 0


def cmd_node(client: Client, args: argparse.Namespace) -> int:
    """podium node drain|pause|activate|rm NODE."""
    if args.action == "rm":
        client.remove_node(args.node, force=args.force)
        print(f"removed node {args.node}")
        return 0
    availability = "active" if args.action == "activate" else args.action
    node = client.set_availability(args.node, availability)
    name = node.description.name
    print(f"node {name}: {views.node_row(node, 0)['availability']}")
    if args.action != "drain" or args.detach:
        return 0
    deadline = time.monotonic() + args.timeout
    shown = -1
    with Changes(client, ["task"]) as changes:
        while True:
            tasks = client.tasks(node=node.id)
            left = [t for t in tasks if holds_resources(t)]
            if len(left) != shown:
                print(f"{name}: {len(left)} task(s) left", flush=True)
                shown = len(left)
            if not left:
                return 0
            if time.monotonic() > deadline:
                reasons = "; ".join(sorted({t.status.message for t in left}))
                print(f"error: {name} still runs {len(left)} task(s) after {args.timeout:g} s: "
                      f"{reasons}", file=sys.stderr)
                return 1
            changes.wait(min(1.0, max(0.0, deadline - time.monotonic())))


def cmd_user(client: Client, args: argparse.Namespace) -> int:
    if args.action == "add":
        path = pathlib.Path(args.file or f"{args.name}.credentials")
        credentials = client.add_user(args.name, args.role)
        try:
            credentials.save(path)
        except OSError as err:
            client.remove_user(args.name)  # nobody could use it
            raise CliError(f"{path}: {err.strerror}; user {args.name} not added", 2) from None
        print(f"user {args.name} ({args.role}): credentials in {path} (use them with "
              f"--credentials {path} or PODIUM_CREDENTIALS={path})")
        return 0
    if args.action == "rm":
        for name in args.names:
            client.remove_user(name)
            print(f"removed user {name}")
        return 0
    rows = [{"name": u.name, "role": u.role,
             "created": u.created.ToDatetime().strftime("%Y-%m-%d %H:%M:%S")}
            for u in client.users()]
    _emit(args, rows, [("NAME", "name"), ("ROLE", "role"), ("CREATED", "created")])
    return 0


def cmd_dashboard(client: Client, args: argparse.Namespace) -> int:
    """The link on stdout (for scripts), what it is on stderr."""
    url, answer = client.dashboard_login()
    left = max(0, round(answer.expires.ToNanoseconds() / 1e9 - time.time()))
    print(url)
    print(f"signs in once, within {left} s, as {answer.user} ({answer.role}); the browser "
          "trusts the page once it trusts the cluster CA (the `ca` of your credentials file)",
          file=sys.stderr)
    if args.open:
        import webbrowser

        if not webbrowser.open(url):
            print("no web browser found here: open the link yourself", file=sys.stderr)
    return 0


def cmd_token(client: Client, args: argparse.Namespace) -> int:
    print(client.join_token(rotate=args.rotate))
    return 0


def cmd_secret(client: Client, args: argparse.Namespace) -> int:
    return _secret_command(client, args, "secret")


def cmd_config(client: Client, args: argparse.Namespace) -> int:
    return _secret_command(client, args, "config")


def _secret_command(client: Client, args: argparse.Namespace, kind: str) -> int:
    if args.action == "create":
        try:
            data = sys.stdin.buffer.read() if args.file == "-" else \
                pathlib.Path(args.file).read_bytes()
        except OSError as err:
            raise CliError(f"{args.file}: {err.strerror}", 2) from None
        stored = client.create_secret(kind, args.name, data)
        print(f"{kind} {stored.spec.name}: version {stored.version} ({stored.id})")
        return 0
    if args.action == "rotate-key":
        key_id, count = client.rotate_secrets_key()
        print(f"re-encrypted {count} secrets and configs under key {key_id}")
        return 0
    if args.action == "rm":
        for name in args.names:
            client.remove_secret(kind, name)
            print(f"removed {kind} {name}")
        return 0
    found = client.secrets(kind)
    if args.action == "inspect":  # configs only: a secret's content is never shown
        versions = [s for s in found if s.spec.name == args.name]
        if not versions:
            raise CliError(f"no config {args.name!r}", 2)
        print(views.to_json([views.secret_row(s, content=True) for s in versions]))
        return 0
    rows = [views.secret_row(s) for s in found]
    columns = [("ID", "id"), ("NAME", "name"), ("VERSION", "version"), ("CREATED", "created")]
    if kind == "config":
        columns.append(("SIZE", "size"))
    _emit(args, rows, columns)
    return 0


def cmd_logs(client: Client, args: argparse.Namespace) -> int:
    """Prints container output as it comes, stdout's lines on stdout and stderr's on stderr,
    each behind its task (`web.2.3f9c1a2b4d5e@node-1 | `), like `docker service logs`. A task
    whose output cannot be read is said on stderr; the exit status is then 1."""
    if args.tail < 0:
        raise CliError(f"--tail {args.tail}: expected a number of lines >= 0", 2)
    since = parse_since(args.since, now=time.time()) if args.since else 0.0
    nodes: dict[str, str] | None = None
    failed = False
    with client.logs(args.ref, follow=args.follow, since=since, tail=args.tail) as stream:
        for response in stream:
            if nodes is None:
                nodes = {n.id: n.description.name for n in client.nodes()}
            node = nodes.get(response.node_id, response.node_id[:12])
            prefix = b"" if args.no_prefix else \
                f"{response.task_name}.{response.task_id[:12]}@{node} | ".encode()
            if response.error:
                failed = True
                where = f"{response.task_name} ({response.task_id[:12]})" if response.task_id \
                    else args.ref
                print(f"podium: logs of {where}: {response.error}", file=sys.stderr, flush=True)
            for line in response.lines:
                out = sys.stderr if line.stream == line.STREAM_STDERR else sys.stdout
                stamp = line.timestamp.ToDatetime().strftime("%Y-%m-%dT%H:%M:%S.%fZ ").encode() \
                    if args.timestamps else b""
                out.buffer.write(prefix + stamp + line.text + b"\n")
            sys.stdout.buffer.flush()
            sys.stderr.buffer.flush()
    return 1 if failed else 0


def parse_since(value: str, *, now: float) -> float:
    """--since: unix seconds for a duration ago ("10m", "1h30m"), an RFC 3339 time or unix
    seconds; CliError naming what is accepted otherwise."""
    import datetime

    from podium.client.compose import SpecError, parse_duration

    with contextlib.suppress(SpecError):
        if not value.replace(".", "", 1).isdigit():
            return now - parse_duration(value, where="--since")
    with contextlib.suppress(ValueError):
        return float(value)
    with contextlib.suppress(ValueError):
        when = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        if when.tzinfo is None:
            when = when.astimezone()  # local time, as written
        return when.timestamp()
    raise CliError(f"--since {value!r}: expected a duration ago (10m, 1h30m), a time "
                   "(2026-12-01T10:00:00Z) or unix seconds", 2)


def cmd_events(client: Client, args: argparse.Namespace) -> int:
    """Follows the cluster's changes until interrupted (or --limit events)."""
    names = {n.id: n.description.name for n in client.nodes()}
    told = _Told()
    if not args.kind or "service" in args.kind:
        for service in client.services():  # what was decided before: not news
            told.seen(service)
    shown = 0
    with client.events(args.kind) as events:
        for event in events:
            kind = event.WhichOneof("object") or ""
            obj = getattr(event, kind)
            action = views.enum_name(event.action, control.Event.Action, "ACTION_")
            when = event.timestamp.ToDatetime().strftime("%H:%M:%S.%f")[:-3]
            if args.output == "json":
                data = _plain(obj)
                print(views.to_json({"time": when, "action": action, "kind": kind,
                                     "actor": event.actor, "object": data}, indent=None),
                      flush=True)
            else:
                by = f" (by {event.actor})" if event.actor else ""
                print(f"{when} {kind} {action} {_describe(kind, obj, names, told)}{by}",
                      flush=True)
            shown += 1
            if args.limit and shown >= args.limit:
                break
    return 0


class _Told:
    """What `podium events` already showed per service id: a service event repeats its update
    message only while the update goes on or when it changed, and shows an autoscale decision
    or a capacity limit once, when it is new."""

    def __init__(self) -> None:
        self.update: dict[str, str] = {}
        self.decision: dict[str, tuple[str, int]] = {}
        self.capacity: dict[str, str] = {}

    def seen(self, service: objects.Service) -> None:
        status = service.autoscale_status
        self.decision[service.id] = (status.last_decision, status.last_time.ToNanoseconds())
        self.capacity[service.id] = status.at_capacity

    def news(self, service: objects.Service) -> str:
        """What a service event's line says after the service's name, each part only when it is
        news: ": updating 1/3", " scaled 2→5: cpu 142% of 60% target", ", at capacity: ..."."""
        text = ""
        status = service.update_status
        if status.state != US.STATE_NONE and status.message:
            active = status.state in (US.STATE_UPDATING, US.STATE_ROLLING_BACK)
            if active or self.update.get(service.id) != status.message:
                self.update[service.id] = status.message
                text += f": {status.message}"
        scaled = service.autoscale_status
        decision = (scaled.last_decision, scaled.last_time.ToNanoseconds())
        if scaled.last_decision and self.decision.get(service.id) != decision:
            # "web 2→5: cpu 142% of 60% target": the reason is what follows the counts.
            reason = scaled.last_decision.partition(": ")[2] or scaled.last_decision
            text += f" scaled {scaled.from_replicas}→{scaled.to_replicas}: {reason}"
        if scaled.at_capacity and self.capacity.get(service.id) != scaled.at_capacity:
            text += f"{', ' if text else ': '}at capacity: {scaled.at_capacity}"
        self.seen(service)
        return text


def _describe(kind: str, obj: Any, names: dict[str, str], told: _Told) -> str:
    if kind == "task":
        row = views.task_row(obj, names)
        detail = row["error"] or row["message"]
        return f"{row['name']} ({row['id']}) {row['state']} on {row['node'] or '-'}: {detail}"
    if kind == "node":
        return f"{obj.description.name} {views.node_state(obj.status.state)}: {obj.status.message}"
    return f"{obj.spec.name} ({obj.id}){told.news(obj)}"
