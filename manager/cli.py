"""The `podium` command: the manager and agent daemons, and the operators' client.

    podium manager --listen HOST:PORT --data-dir DIR
    podium agent --join HOST:PORT --name NAME --data-dir DIR [--docker-host URL] [--label k=v]
                 [--mesh asyncio|kernel] [--mesh-workers N]
    podium [--manager HOST:PORT] deploy -f FILE [--stack NAME] [--detach] [--timeout S]
    podium services | ps [SERVICE] | nodes | scale SERVICE=N ... | rm SERVICE ... | inspect REF
    podium events [--kind KIND]

The manager address defaults to $PODIUM_MANAGER, else 127.0.0.1:7070. Exit
status: 0 on success, 1 when the cluster refuses or fails to converge, 2 for
bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import pathlib
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import grpc
from google.protobuf import json_format

from podium.agent.meshpool import MAX_DEFAULT_WORKERS, default_workers
from podium.manager import views
from podium.manager.taskstate import has_finished, holds_resources, is_live
from podium.v1 import control, control_grpc, objects

DEFAULT_MANAGER = "127.0.0.1:7070"
RUNNING = objects.TASK_STATE_RUNNING


class CliError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# -- daemons -----------------------------------------------------------------------


async def _run_until_signalled(
    start: Callable[[], Awaitable[Any]],
    serve: Callable[[], Coroutine[Any, Any, None]],
    stop: Callable[[], Awaitable[None]],
) -> None:
    loop = asyncio.get_running_loop()
    await start()
    serving = asyncio.ensure_future(serve())
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, serving.cancel)
    try:
        await serving
    except asyncio.CancelledError:
        pass
    finally:
        await stop()


def cmd_manager(args: argparse.Namespace) -> int:
    from podium.manager.manager import Manager

    manager = Manager(
        listen=args.listen, data_dir=args.data_dir, heartbeat_period=args.heartbeat_period,
        down_grace=args.down_grace,
    )
    asyncio.run(_run_until_signalled(manager.start, manager.serve_forever, manager.stop))
    return 0


def _mesh_workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 64:
        raise argparse.ArgumentTypeError(f"--mesh-workers must be a whole number from 0 to 64, "
                                         f"not {text!r}")
    return value


def _labels(pairs: list[str]) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise CliError(f"--label {pair!r}: expected KEY=VALUE", 2)
        labels[key] = value
    return labels


def cmd_agent(args: argparse.Namespace) -> int:
    from podium.agent._docker import DockerExecutor
    from podium.agent.agent import Agent, load_node_id
    from podium.agent.proxy import new_event_loop

    labels = _labels(args.label)
    node_id = load_node_id(pathlib.Path(args.data_dir))

    async def main() -> None:
        executor = DockerExecutor(node_id=node_id, docker_host=args.docker_host)
        agent = Agent(
            manager=args.join, name=args.name, node_id=node_id, executor=executor, labels=labels,
            mesh=args.mesh, mesh_workers=args.mesh_workers,
        )
        await _run_until_signalled(agent.start, agent.serve_forever, agent.stop)

    # uvloop where installed: the mesh's data path is markedly faster on it.
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(main())
    return 0


# -- client ------------------------------------------------------------------------


class Client:
    def __init__(self, address: str) -> None:
        self.address = address
        self._channel = grpc.insecure_channel(address)
        self.api = control_grpc.ControlStub(self._channel)

    def call(self, method: str, request: Any, timeout: float = 10.0) -> Any:
        try:
            return getattr(self.api, method)(request, timeout=timeout)
        except grpc.RpcError as err:
            code = err.code()
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise CliError(
                    f"cannot reach the manager at {self.address} ({err.details()}); "
                    "start one with `podium manager` or set --manager / PODIUM_MANAGER"
                ) from None
            bad = code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND)
            raise CliError(str(err.details()), 2 if bad else 1) from None

    def node_names(self) -> dict[str, str]:
        nodes = self.call("ListNodes", control.ListNodesRequest()).nodes
        return {n.id: n.description.name for n in nodes}

    def close(self) -> None:
        self._channel.close()


class Changes:
    """Wakes a waiting command as soon as the manager reports a change: its event stream is
    read on a thread, and `wait(timeout)` returns at the next event (or after `timeout`).
    Without the stream (an error, an older manager) it waits at most POLL seconds: polling."""

    POLL = 0.1

    def __init__(self, client: Client, kinds: list[str]) -> None:
        self._changed = threading.Event()
        self._call = client.api.WatchEvents(control.WatchEventsRequest(kinds=kinds))
        self._thread = threading.Thread(target=self._follow, name="changes", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        with contextlib.suppress(grpc.RpcError):
            for _ in self._call:
                self._changed.set()

    def wait(self, timeout: float) -> None:
        """Returns at the next change since the last wait, or after `timeout` seconds."""
        self._changed.wait(timeout if self._thread.is_alive() else min(timeout, self.POLL))
        self._changed.clear()

    def close(self) -> None:
        self._call.cancel()
        self._thread.join(timeout=5)

    def __enter__(self) -> Changes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _emit(args: argparse.Namespace, rows: list[views.Row], columns: list[tuple[str, str]]) -> None:
    print(views.to_json(rows) if args.output == "json" else views.table(rows, columns))


def cmd_services(client: Client, args: argparse.Namespace) -> int:
    services = client.call("ListServices", control.ListServicesRequest()).services
    tasks = client.call("ListTasks", control.ListTasksRequest()).tasks
    rows = [views.service_row(s, [t for t in tasks if t.service_id == s.id]) for s in services]
    for row in rows:
        row["replicas"] = f"{row['running']}/{row['desired']}"
    _emit(
        args,
        rows,
        [
            ("ID", "id"),
            ("NAME", "name"),
            ("MODE", "mode"),
            ("REPLICAS", "replicas"),
            ("IMAGE", "image"),
            ("PORTS", "ports"),
        ],
    )
    return 0


def cmd_ps(client: Client, args: argparse.Namespace) -> int:
    tasks = client.call("ListTasks", control.ListTasksRequest(service=args.service or "")).tasks
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
    nodes = client.call("ListNodes", control.ListNodesRequest()).nodes
    tasks = client.call("ListTasks", control.ListTasksRequest()).tasks
    counts: dict[str, int] = {}
    for t in tasks:
        if holds_resources(t):
            counts[t.node_id] = counts.get(t.node_id, 0) + 1
    rows = [views.node_row(n, counts.get(n.id, 0)) for n in nodes]
    load = {n.node_id: n.latest for n in client.call("GetLoad", control.GetLoadRequest()).nodes}
    for row in rows:
        row["memory"] = views.gib(row["memory_bytes"])
        latest = load.get(row["id"])
        row["cpu_used_cores"] = round(latest.cpu_cores_used, 2) if latest else None
        row["memory_used_bytes"] = latest.memory_used_bytes if latest else None
        row["load"] = (
            f"{latest.cpu_cores_used:.2f} cpu, {views.gib(latest.memory_used_bytes)}"
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


def _replica_rows(client: Client, service_id: str) -> list[views.Row]:
    """Each live replica's state, health and routing, for `inspect SERVICE`."""
    tasks = [t for t in client.call("ListTasks", control.ListTasksRequest(service=service_id)).tasks
             if is_live(t)]
    return [{k: row[k] for k in ("id", "name", "node", "state", "health", "ready", "routing",
                                 "connections", "restarts")}
            for row in _task_rows(client, tasks)]


def _task_rows(client: Client, tasks: Sequence[objects.Task]) -> list[views.Row]:
    """Rows for `tasks` with their node names, load and routing state (one ListNodes, one
    GetLoad for all of them)."""
    nodes = {n.id: n for n in client.call("ListNodes", control.ListNodesRequest()).nodes}
    names = {node_id: n.description.name for node_id, n in nodes.items()}
    load = {t.task_id: t for t in client.call("GetLoad", control.GetLoadRequest()).tasks}
    rows = []
    for task in tasks:
        row = views.task_row(task, names)
        views.add_task_load(row, load.get(task.id))
        views.add_routing(row, task, nodes.get(task.node_id))
        rows.append(row)
    return rows


def cmd_inspect(client: Client, args: argparse.Namespace) -> int:
    for method, field in (("GetService", "service"), ("GetTask", "task"), ("GetNode", "node")):
        try:
            found = getattr(client.call(method, control.GetRequest(ref=args.ref)), field)
        except CliError:
            continue
        data = json_format.MessageToDict(found, preserving_proto_field_name=True)
        if field == "service":
            data["replicas_status"] = _replica_rows(client, found.id)
        print(views.to_json({"kind": field, **data}))
        return 0
    raise CliError(f"no service, task or node {args.ref!r}", 2)


def cmd_deploy(client: Client, args: argparse.Namespace) -> int:
    # Imported here: the agent runs from this module too and needs no YAML parser.
    from podium.manager.compose import SpecError, load_stack

    path = pathlib.Path(args.file)
    try:
        text = sys.stdin.read() if args.file == "-" else path.read_text()
    except OSError as err:
        raise CliError(f"{args.file}: {err.strerror}", 2) from None
    try:
        specs = load_stack(text, source=args.file, stack=args.stack)
    except SpecError as err:
        raise CliError(str(err), 2) from None
    names = []
    for spec in specs:
        try:
            current = client.call("GetService", control.GetRequest(ref=spec.name)).service
        except CliError:
            current = None
        if current is None or current.spec.name != spec.name:
            client.call("CreateService", control.CreateServiceRequest(spec=spec))
            print(f"created service {spec.name}")
        else:
            request = control.UpdateServiceRequest(
                service_id=current.id, version=current.meta.version, spec=spec
            )
            updated = client.call("UpdateService", request).service
            changed = updated.meta.version != current.meta.version
            print(f"{'updated' if changed else 'unchanged'} service {spec.name}")
        names.append(spec.name)
    return 0 if args.detach else wait_converged(client, names, args.timeout)


def cmd_scale(client: Client, args: argparse.Namespace) -> int:
    wanted = []
    for pair in args.pairs:
        name, eq, count = pair.partition("=")
        if not eq or not name or not count.isdigit():
            raise CliError(f"{pair!r}: expected SERVICE=REPLICAS, e.g. web=3", 2)
        wanted.append((name, int(count)))
    names = []
    for name, count in wanted:
        svc = client.call("ScaleService", control.ScaleServiceRequest(ref=name, replicas=count))
        print(f"{svc.service.spec.name} scaled to {count}")
        names.append(svc.service.spec.name)
    return 0 if args.detach else wait_converged(client, names, args.timeout)


def cmd_rm(client: Client, args: argparse.Namespace) -> int:
    for ref in args.services:
        client.call("RemoveService", control.RemoveServiceRequest(ref=ref))
        print(f"removed service {ref}")
    return 0


_AVAILABILITY = {
    "activate": objects.NodeSpec.AVAILABILITY_ACTIVE,
    "pause": objects.NodeSpec.AVAILABILITY_PAUSE,
    "drain": objects.NodeSpec.AVAILABILITY_DRAIN,
}


def cmd_node(client: Client, args: argparse.Namespace) -> int:
    """podium node drain|pause|activate NODE."""
    request = control.UpdateNodeRequest(ref=args.node, availability=_AVAILABILITY[args.action])
    node = client.call("UpdateNode", request).node
    name = node.description.name
    print(f"node {name}: {views.node_row(node, 0)['availability']}")
    if args.action != "drain" or args.detach:
        return 0
    deadline = time.monotonic() + args.timeout
    shown = -1
    with Changes(client, ["task"]) as changes:
        while True:
            tasks = client.call("ListTasks", control.ListTasksRequest(node=node.id)).tasks
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


def cmd_events(client: Client, args: argparse.Namespace) -> int:
    """Follows the cluster's changes until interrupted (or --limit events)."""
    request = control.WatchEventsRequest(kinds=args.kind)
    names = client.node_names()
    shown = 0
    try:
        for event in client.api.WatchEvents(request):
            kind = event.WhichOneof("object") or ""
            obj = getattr(event, kind)
            action = views.enum_name(event.action, control.Event.Action, "ACTION_")
            when = event.timestamp.ToDatetime().strftime("%H:%M:%S.%f")[:-3]
            if args.output == "json":
                data = json_format.MessageToDict(obj, preserving_proto_field_name=True)
                print(json.dumps({"time": when, "action": action, "kind": kind,
                                        "object": data}), flush=True)
            else:
                print(f"{when} {kind} {action} {_describe(kind, obj, names)}", flush=True)
            shown += 1
            if args.limit and shown >= args.limit:
                break
    except grpc.RpcError as err:
        raise CliError(f"event stream from {client.address} ended: {err.details()}") from None
    return 0


def _describe(kind: str, obj: Any, names: dict[str, str]) -> str:
    if kind == "task":
        row = views.task_row(obj, names)
        detail = row["error"] or row["message"]
        return f"{row['name']} ({row['id']}) {row['state']} on {row['node'] or '-'}: {detail}"
    if kind == "node":
        return f"{obj.description.name} {views.node_state(obj.status.state)}: {obj.status.message}"
    return f"{obj.spec.name} ({obj.id})"


def convergence(client: Client, name: str) -> tuple[bool, str]:
    """Whether a service runs as its spec says, and a progress line."""
    service = client.call("GetService", control.GetRequest(ref=name)).service
    tasks = client.call("ListTasks", control.ListTasksRequest(service=service.id)).tasks
    live = [t for t in tasks if is_live(t)]
    current = [t for t in live if t.spec_version == service.spec_version]
    running = [t for t in current if t.status.state == RUNNING]
    stopping = [t for t in tasks if not is_live(t) and not has_finished(t)]
    glob = service.spec.mode == objects.ServiceSpec.MODE_GLOBAL
    desired = len(live) if glob else service.spec.replicas
    done = len(running) == desired == len(live) and not stopping
    line = f"{name}: {len(running)}/{desired} running"
    if stopping:
        line += f", {len(stopping)} stopping"
    waiting = [t for t in live if t.status.state != RUNNING]
    if waiting:
        t = waiting[0]
        why = t.status.err or t.status.message
        line += f" ({views.task_state(t.status.state)}: {why})" if why else ""
    return done, line


def wait_converged(client: Client, names: list[str], timeout: float) -> int:
    with Changes(client, ["service", "task"]) as changes:
        return _wait_converged(client, names, timeout, changes)


def _wait_converged(client: Client, names: list[str], timeout: float, changes: Changes) -> int:
    deadline = time.monotonic() + timeout
    shown: dict[str, str] = {}
    pending = list(names)
    while True:
        for name in list(pending):
            done, line = convergence(client, name)
            if line != shown.get(name):
                print(line, flush=True)
                shown[name] = line
            if done:
                pending.remove(name)
        if not pending:
            print("converged")
            return 0
        if time.monotonic() > deadline:
            for name in pending:
                print(
                    f"error: {name} did not converge within {timeout:g} s: {shown[name]}",
                    file=sys.stderr,
                )
            return 1
        # Looked at again at the next change (every 1 s regardless, should one be missed).
        changes.wait(min(1.0, max(0.0, deadline - time.monotonic())))


# -- parser ------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="podium", description="Run services across Docker hosts.")
    p.add_argument(
        "--manager",
        default=os.environ.get("PODIUM_MANAGER", DEFAULT_MANAGER),
        help="manager address HOST:PORT (default: $PODIUM_MANAGER or %(default)s)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    m = sub.add_parser("manager", help="run a manager")
    m.add_argument("--listen", default="0.0.0.0:7070", help="address to serve on")
    m.add_argument("--data-dir", required=True, help="where the manager keeps its state")
    m.add_argument("--heartbeat-period", type=float, default=1.0, help="seconds")
    m.add_argument(
        "--down-grace", type=float, default=1.0,
        help="seconds a node whose session broke stays suspect before it is down and its tasks "
        "move (default %(default)s); a restarted agent that reconnects within it keeps its tasks",
    )
    m.set_defaults(daemon=cmd_manager)

    a = sub.add_parser("agent", help="run an agent on this host")
    a.add_argument("--join", required=True, help="manager address HOST:PORT")
    a.add_argument("--name", required=True, help="node name, unique in the cluster")
    a.add_argument("--data-dir", required=True, help="where the agent keeps its node id")
    a.add_argument("--docker-host", default=None, help="engine URL, e.g. unix:///run/docker.sock")
    a.add_argument("--label", action="append", default=[], help="node label KEY=VALUE")
    a.add_argument("--mesh", choices=("asyncio", "kernel"), default="asyncio",
                   help="routing mesh data path: the asyncio proxy (default) or nftables DNAT")
    a.add_argument("--mesh-workers", type=_mesh_workers, default=default_workers(),
                   metavar="N",
                   help="processes running the asyncio proxy, each on every published port "
                   "(SO_REUSEPORT); 0 runs it in the agent's own event loop (default: one per "
                   f"core, at most {MAX_DEFAULT_WORKERS}, or 0 on one core: %(default)s here)")
    a.set_defaults(daemon=cmd_agent)

    def client_cmd(
        name: str, fn: Callable[[Client, argparse.Namespace], int], help: str, output: bool = True
    ) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help)
        if output:
            c.add_argument("-o", "--output", choices=("table", "json"), default="table")
        c.set_defaults(client=fn)
        return c

    def waits(c: argparse.ArgumentParser) -> None:
        c.add_argument("-d", "--detach", action="store_true", help="return without waiting")
        c.add_argument(
            "--timeout",
            type=float,
            default=120.0,
            help="seconds to wait for convergence (default %(default)s)",
        )

    d = client_cmd(
        "deploy", cmd_deploy, "create or update the services of a Compose file", output=False
    )
    d.add_argument("-f", "--file", required=True, help="Compose file ('-' for stdin)")
    d.add_argument("--stack", default=None, help="stack name (default: the file's name:)")
    waits(d)
    client_cmd("services", cmd_services, "list services")
    ps = client_cmd("ps", cmd_ps, "list tasks")
    ps.add_argument("service", nargs="?", help="only this service's tasks")
    ps.add_argument("-a", "--all", action="store_true", help="include all finished tasks")
    client_cmd("nodes", cmd_nodes, "list nodes")
    s = client_cmd("scale", cmd_scale, "set replica counts", output=False)
    s.add_argument("pairs", nargs="+", metavar="SERVICE=N")
    waits(s)
    r = client_cmd("rm", cmd_rm, "remove services", output=False)
    r.add_argument("services", nargs="+", metavar="SERVICE")
    i = client_cmd("inspect", cmd_inspect, "show a service, task or node", output=False)
    i.add_argument("ref", help="name or id (or unique id prefix)")
    n = client_cmd("node", cmd_node, "drain, pause or activate a node", output=False)
    n.add_argument("action", choices=sorted(_AVAILABILITY),
                   help="drain: move its tasks away (replacements first); pause: no new tasks; "
                   "activate: back to normal")
    n.add_argument("node", help="node name or id")
    waits(n)
    e = client_cmd("events", cmd_events, "follow the cluster's changes")
    e.add_argument("--kind", action="append", default=[], choices=("node", "service", "task"),
                   help="only these kinds (repeatable)")
    e.add_argument("--limit", type=int, default=0, help="stop after this many events")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if hasattr(args, "daemon"):
            return int(args.daemon(args))
        client = Client(args.manager)
        try:
            return int(args.client(client, args))
        finally:
            client.close()
    except CliError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        with contextlib.suppress(OSError):
            sys.stdout.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
