"""The `podium` command: the operators' client, built on podium.client.Client, and the entry to
the daemons (`podium manager`, `podium agent`: podium.manager.main and podium.agent.main).

    podium manager --listen HOST:PORT --data-dir DIR
    podium manager backup|restore --data-dir DIR FILE
    podium agent --join HOST:PORT --name NAME --data-dir DIR [--docker-host URL] [--label k=v]
                 [--mesh asyncio|kernel] [--mesh-workers N]
    podium [--manager HOST:PORT] deploy -f FILE [--stack NAME] [--profile P] [--force] [--detach]
                                [--timeout S] [--plan]
    podium services | ps [SERVICE] | nodes | scale SERVICE=N ... | rm SERVICE ... | inspect REF
    podium history SERVICE | rollback SERVICE [--to VERSION] | promote SERVICE
    podium node drain|pause|activate|rm NODE | events [--kind KIND]
    podium logs SERVICE|TASK [-f] [--since WHEN] [--tail N] [-t]
    podium dashboard [--open]
    podium user add NAME --role admin|operator|viewer [--file PATH] | user ls | user rm NAME
    podium token agent [--rotate]
    podium secret create NAME FILE|- | secret ls | secret rm NAME | secret rotate-key
    podium config create NAME FILE|- | config ls | config rm NAME | config inspect NAME

Clients use mutual TLS with a credentials file (--credentials, $PODIUM_CREDENTIALS, else
~/.config/podium/credentials); the manager address defaults to $PODIUM_MANAGER, else the
credentials' manager, else 127.0.0.1:7070. Exit status: 0 on success,
1 when the cluster refuses, cannot be reached or fails to converge, 2 for bad input or an unknown
name. Only what a command needs is imported: `podium --help` loads neither gRPC nor protobuf.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from podium.agent import main as agent_main
from podium.client import DEFAULT_MANAGER
from podium.manager import main as manager_main
from podium.rules import daemon

if TYPE_CHECKING:
    from podium.client._api import Client

class CliError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# -- parser ------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="podium", description="Run services across Docker hosts.")
    p.add_argument(
        "--manager", default=None,
        help="manager address HOST:PORT, or several managers HOST:PORT,HOST:PORT,... (calls go "
        "to the leader) (default: $PODIUM_MANAGER, else the credentials' manager, else "
        f"{DEFAULT_MANAGER})",
    )
    p.add_argument(
        "--credentials", default=None, metavar="PATH",
        help="credentials file: a user's certificate, key and the cluster CA (default: "
        "$PODIUM_CREDENTIALS, else ~/.config/podium/credentials, which the manager writes for "
        "the local admin at its first start; `podium user add` makes others)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    m = sub.add_parser("manager", help="run a manager")
    manager_main.add_arguments(m)
    daemon.add_log_format(m)
    m.set_defaults(daemon=manager_main.run)
    a = sub.add_parser("agent", help="run an agent on this host")
    agent_main.add_arguments(a)
    daemon.add_log_format(a)
    a.set_defaults(daemon=agent_main.run)

    def client_cmd(name: str, help: str, output: bool = True) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help)
        if output:
            c.add_argument("-o", "--output", choices=("table", "json"), default="table")
        c.set_defaults(client=name)  # run by podium.client._commands.cmd_<name>
        return c

    def waits(c: argparse.ArgumentParser, until: str = "convergence") -> None:
        c.add_argument("-d", "--detach", action="store_true", help="return without waiting")
        c.add_argument(
            "--timeout",
            type=float,
            default=120.0,
            help=f"seconds to wait for {until} (default %(default)s)",
        )

    d = client_cmd("deploy", "create or update the services of a Compose file", output=False
    )
    d.add_argument("-f", "--file", required=True, help="Compose file ('-' for stdin)")
    d.add_argument("--stack", default=None,
                   help="stack name (default: the file's name:, else its folder's name)")
    d.add_argument("--profile", action="append", default=[], metavar="PROFILE",
                   help="also deploy the services of this Compose profile (repeatable)")
    d.add_argument("--force", action="store_true",
                   help="replace every task of the file's existing services, changed or not")
    d.add_argument("--plan", action="store_true",
                   help="show what the deploy would change, where new tasks would go and what "
                        "would stay pending, changing nothing")
    waits(d, "the updates to complete or new services to converge")
    client_cmd("services", "list services")
    ps = client_cmd("ps", "list tasks")
    ps.add_argument("service", nargs="?", help="only this service's tasks")
    ps.add_argument("-a", "--all", action="store_true", help="include all finished tasks")
    client_cmd("nodes", "list nodes")
    s = client_cmd("scale", "set replica counts", output=False)
    s.add_argument("pairs", nargs="+", metavar="SERVICE=N")
    waits(s)
    h = client_cmd("history", "list the versions a service kept")
    h.add_argument("service", metavar="SERVICE")
    rb = client_cmd("rollback", "go back to an earlier version of a service", output=False)
    rb.add_argument("service", metavar="SERVICE")
    rb.add_argument("--to", type=int, default=0, metavar="VERSION",
                    help="the version to go back to (default: the one before the current; "
                    "see `podium history`)")
    waits(rb, "the rollback to complete")
    pr = client_cmd("promote", "promote the canaries of a service's update", output=False)
    pr.add_argument("service", metavar="SERVICE")
    waits(pr, "the update to complete")
    r = client_cmd("rm", "remove services", output=False)
    r.add_argument("services", nargs="+", metavar="SERVICE")
    i = client_cmd("inspect", "show a service, task or node", output=False)
    i.add_argument("ref", help="name or id (or unique id prefix)")
    n = client_cmd("node", "drain, pause, activate or remove a node", output=False)
    n.add_argument("action", choices=("activate", "drain", "pause", "rm"),
                   help="drain: move its tasks away (replacements first); pause: no new tasks; "
                   "activate: back to normal; rm: remove it (its certificate stops working at "
                   "once; its tasks are replaced elsewhere)")
    n.add_argument("node", help="node name or id")
    n.add_argument("--force", action="store_true", help="rm: a node that is still ready too")
    waits(n)
    u = client_cmd("user", "add, list or remove users (admins)", output=False)
    user_actions = u.add_subparsers(dest="action", required=True, metavar="ACTION")
    ua = user_actions.add_parser("add", help="add a user and write its credentials file")
    ua.add_argument("name", metavar="NAME")
    ua.add_argument("--role", required=True, choices=("admin", "operator", "viewer"),
                    help="admin: everything; operator: deploy, scale, update, roll back, "
                    "write secrets (never read them back); viewer: list, inspect, events")
    ua.add_argument("--file", default=None, metavar="PATH",
                    help="where to write the credentials (default: ./NAME.credentials)")
    ul = user_actions.add_parser("ls", help="list users")
    ul.add_argument("-o", "--output", choices=("table", "json"), default="table")
    ur = user_actions.add_parser("rm", help="remove users: their certificates stop working at "
                                 "once")
    ur.add_argument("names", nargs="+", metavar="NAME")
    t = client_cmd("token", "print the agents' join token (admins)", output=False)
    t.add_argument("role", choices=("agent",), help="who the token admits")
    t.add_argument("--rotate", action="store_true",
                   help="make a new token first: the old one stops admitting agents (joined "
                   "nodes are not affected)")
    for kind in ("secret", "config"):
        k = client_cmd(kind, f"create, list or remove {kind}s", output=False)
        actions = k.add_subparsers(dest="action", required=True, metavar="ACTION")
        kc = actions.add_parser("create", help=f"store a {kind} (a new version when the name "
                                "is taken and the content differs)")
        kc.add_argument("name", metavar="NAME")
        kc.add_argument("file", metavar="FILE", help="file to read ('-' for stdin)")
        kl = actions.add_parser("ls", help=f"list {kind}s (every version)")
        kl.add_argument("-o", "--output", choices=("table", "json"), default="table")
        kr = actions.add_parser("rm", help=f"remove a {kind} (every version)")
        kr.add_argument("names", nargs="+", metavar="NAME")
        if kind == "secret":
            actions.add_parser("rotate-key", help="re-encrypt every stored secret and config "
                               "under a new key, then forget the old one (admins only)")
        if kind == "config":
            ki = actions.add_parser("inspect", help="show a config's versions and content")
            ki.add_argument("name", metavar="NAME")
    lg = client_cmd("logs", "container output of a service's tasks (across hosts) or of one "
                    "task, each line prefixed with its task", output=False)
    lg.add_argument("ref", metavar="SERVICE|TASK", help="a service, or a task (web.2 or an id)")
    lg.add_argument("-f", "--follow", action="store_true",
                    help="then follow new output, and tasks that start meanwhile (Ctrl-C ends)")
    lg.add_argument("--since", metavar="WHEN", default="",
                    help="only lines since WHEN: a duration ago (10m, 1h30m) or a time "
                    "(2026-12-01T10:00:00Z, or unix seconds)")
    lg.add_argument("-n", "--tail", type=int, default=0, metavar="N",
                    help="only the last N lines of each task (default: all)")
    lg.add_argument("-t", "--timestamps", action="store_true", help="show each line's time")
    lg.add_argument("--no-prefix", action="store_true", help="lines only, without their task")
    db = client_cmd("dashboard", "print a login link for the manager's dashboard (signs in "
                    "once, within a minute, as your user)", output=False)
    db.add_argument("--open", action="store_true",
                    help="also open it in this machine's web browser")
    e = client_cmd("events", "follow the cluster's changes")
    e.add_argument("--kind", action="append", default=[], choices=("node", "service", "task"),
                   help="only these kinds (repeatable)")
    e.add_argument("--limit", type=int, default=0, help="stop after this many events")
    return p


def _run_client_command(args: argparse.Namespace) -> int:
    from podium.client import _commands
    from podium.client._api import Client, InvalidArgument, NotFound, PodiumError

    command: Callable[[Client, argparse.Namespace], int] = getattr(_commands, f"cmd_{args.client}")
    try:
        with Client(args.manager, credentials=args.credentials) as client:
            return int(command(client, args))
    except PodiumError as err:
        # A name that is not there or input the manager refused is bad input (2); a manager
        # that cannot be reached or refuses for another reason is a failure (1).
        raise CliError(str(err), 2 if isinstance(err, NotFound | InvalidArgument) else 1) from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import logging

    # The daemons' own lines as --log-format says; the client's are always text.
    daemon.configure_logging(getattr(args, "log_format", "text"),
                             level=logging.DEBUG if args.verbose else logging.INFO)
    try:
        if hasattr(args, "daemon"):
            return int(args.daemon(args))
        return _run_client_command(args)
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
    # Run through the package's own copy of this module: the commands raise its CliError.
    from podium.client.cli import main as package_main

    sys.exit(package_main())
