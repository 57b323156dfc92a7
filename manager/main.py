"""The manager daemon's entry point: `podium manager ...` or `python -m podium.manager ...`.

Argument parsing imports nothing heavy, so that `podium --help` stays fast; the manager itself
is imported only when it runs. SIGTERM and SIGINT stop it cleanly (`Manager.stop()`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from podium.rules import daemon, metricsserver, network


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listen", default="0.0.0.0:7070",
                   help="address to serve the API on, mutual TLS only (default %(default)s)")
    p.add_argument("--join-listen", default=None, metavar="HOST:PORT",
                   help="address agents join on with a token: TLS without a client certificate, "
                   "serving nothing but joins (default: --listen's host and the next port)")
    p.add_argument("--san", action="append", default=[], metavar="NAME",
                   help="a name or address agents and users reach the manager at, added to its "
                   "certificate (repeatable; clients check the certificate's name "
                   "'podium-manager', so this only serves other TLS tools)")
    p.add_argument("--admin-credentials", default="~/.config/podium/credentials",
                   metavar="PATH",
                   help="where to write the local admin's credentials file at start, unless a "
                   "working one is there (default %(default)s; 'none': nowhere)")
    p.add_argument("--node-cert-lifetime", type=_seconds("--node-cert-lifetime", 10, 3650 * 86400),
                   default=90 * 86400.0, metavar="SECONDS",
                   help="how long a node's certificate is valid; agents renew theirs at a random "
                   "point 50-80%% through (default 90 days)")
    p.add_argument("--metrics-listen", type=_metrics_listen, default="127.0.0.1:9470",
                   metavar="HOST:PORT",
                   help="address to serve Prometheus metrics on, plain HTTP at /metrics "
                   "('off': none; default %(default)s)")
    p.add_argument("--dashboard", type=_dashboard_listen, default="127.0.0.1:7072",
                   metavar="HOST:PORT",
                   help="address to serve the dashboard on, HTTPS with a certificate of the "
                   "cluster CA; `podium dashboard` prints a login link ('off': none; default "
                   "%(default)s)")
    # Not required here, so that `backup` and `restore` (below) parse: run() checks it.
    p.add_argument("--data-dir", default=None, help="where the manager keeps its state "
                   "(required)")
    p.add_argument("--heartbeat-period", type=_seconds("--heartbeat-period", 0.1, 60),
                   default=1.0, metavar="SECONDS",
                   help="how often each agent reports (a heartbeat or its load) in a small "
                   "cluster (default %(default)s s)")
    p.add_argument("--heartbeats-per-second",
                   type=_seconds("--heartbeats-per-second", 0, 1e6, unit="reports a second"),
                   default=1500.0, metavar="N",
                   help="the most reports a second the agents send together: beyond it every "
                   "agent's period grows with the number of agents, in steps of 0.5 s (5,000 "
                   "agents: 3.5 s); 0: never (default %(default)g)")
    p.add_argument(
        "--down-grace", type=_seconds("--down-grace", 0.1, 3600), default=1.0,
        help="longest a node whose session broke stays suspect while its host is probed; "
        "without a conclusive answer by then it is down (default %(default)s s)",
    )
    p.add_argument(
        "--agent-restart-grace", type=_seconds("--agent-restart-grace", 0, 86400),
        default=30.0, metavar="SECONDS",
        help="how long the tasks of a node whose agent is gone while its host still answers "
        "(a restart, an upgrade, a crash) are held before they are replaced (default "
        "%(default)s s)",
    )
    p.add_argument(
        "--probe-timeout", type=_seconds("--probe-timeout", 0.05, 10), default=0.5,
        metavar="SECONDS",
        help="how long the manager waits for a node's host to answer a TCP connect when its "
        "session breaks or runs late; no answer means the host is gone and its tasks are "
        "replaced at once (default %(default)s s)",
    )
    p.add_argument(
        "--handshake-timeout", type=_seconds("--handshake-timeout", 0.1, 600), default=10.0,
        metavar="SECONDS",
        help="a connection that has not finished its handshake by then is closed, so that "
        "connections that send nothing hold nothing (default %(default)s s)",
    )
    p.add_argument(
        "--virtual-ip-range", type=_range, default=network.DEFAULT_RANGE, metavar="CIDR",
        help="the IPv4 range services' virtual IPs are taken from (its first address is every "
        "node's name server for containers); it must not overlap the hosts' or the engines' "
        "networks (default %(default)s)",
    )
    p.add_argument(
        "--store", type=_store_url, default="sqlite", metavar="URL",
        help="where the state is kept: 'sqlite' (DATA_DIR/state.db, one manager; the default) "
        "or etcd://HOST:PORT[,HOST:PORT...][/PREFIX] (managers sharing one state; etcds:// for "
        "TLS, by default with the cluster CA of DATA_DIR/pki and a client certificate it "
        "issues the manager)")
    _etcd_tls_arguments(p)
    p.add_argument(
        "--advertise", type=_advertise, default=None, metavar="HOST:PORT",
        help="with an etcd store: where agents and users reach this manager's API, which the "
        "other managers name when this one leads (its join port: that host and the join port's "
        "number) (default: --listen's address, 127.0.0.1 for 0.0.0.0)")
    p.add_argument(
        "--leader-ttl", type=_whole_seconds("--leader-ttl", 2, 60), default=3, metavar="SECONDS",
        help="with an etcd store: the leader's lease; a leader that cannot renew it steps down "
        "a third of it before it ends, another manager leads once it ended (default "
        "%(default)s s)")
    # Optional subcommands: without one, `podium manager [flags]` runs the daemon as before.
    actions = p.add_subparsers(dest="manager_action",
                               metavar="[backup|restore|migrate|etcd-cert]")
    b = actions.add_parser(
        "backup", help="write the state, the secrets key and the CA of a (running) manager to "
        "one archive, run on its host")
    b.add_argument("--data-dir", required=True, help="the manager's data dir")
    b.add_argument("file", metavar="FILE", help="the archive to write (mode 0600)")
    r = actions.add_parser(
        "restore", help="unpack a backup into a new (missing or empty) data dir")
    r.add_argument("--data-dir", required=True, help="the data dir to create")
    r.add_argument("file", metavar="FILE", help="the archive made by `podium manager backup`")
    m = actions.add_parser(
        "migrate", help="copy a stopped manager's state into an empty etcd prefix (--data-dir D "
        "--to etcd://...), or an etcd store's into a new state.db (--from etcd://... "
        "--to-data-dir D2)")
    m.add_argument("--data-dir", default=None,
                   help="the manager's data dir: its state.db (with --to), its secrets key ring "
                   "and cluster CA (both ways)")
    m.add_argument("--to", type=_etcd_url, default=None, metavar="URL",
                   help="the etcd store to fill (its prefix must be empty)")
    m.add_argument("--from", dest="source", type=_etcd_url, default=None, metavar="URL",
                   help="the etcd store to copy out of")
    m.add_argument("--to-data-dir", default=None, metavar="DIR",
                   help="with --from: the data dir to write state.db in (it must have none); "
                   "the key ring and CA of --data-dir are copied there when it has none")
    _etcd_tls_arguments(m)
    c = actions.add_parser(
        "etcd-cert", help="issue an etcd member's certificate from the cluster CA, so that etcd "
        "accepts only this cluster's managers (--client-cert-auth)")
    c.add_argument("--data-dir", required=True, help="the manager's data dir (its pki/)")
    c.add_argument("--name", required=True, help="the member's name (its certificate's "
                   "common name, and a name it is valid for)")
    c.add_argument("--host", action="append", default=[], metavar="NAME|IP",
                   help="another name or address clients and peers reach the member at "
                   "(repeatable; localhost and 127.0.0.1 are always in)")
    c.add_argument("--out", required=True, metavar="DIR",
                   help="where to write NAME.crt, NAME.key (0600) and ca.crt")


def _etcd_tls_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--etcd-ca", default=None, metavar="FILE",
                   help="with etcds://: the CA that signed the etcd members' certificates "
                   "(default DATA_DIR/pki/ca.crt, the cluster CA)")
    p.add_argument("--etcd-cert", default=None, metavar="FILE",
                   help="with etcds://: the certificate to show etcd (default: one the cluster "
                   "CA issues at start)")
    p.add_argument("--etcd-key", default=None, metavar="FILE",
                   help="with etcds://: the key of --etcd-cert")


def _advertise(text: str) -> str:
    from podium.rules import managers

    try:
        addresses = managers.parse(text, what="--advertise")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if len(addresses) != 1:
        raise argparse.ArgumentTypeError(f"--advertise {text!r}: expected one HOST:PORT")
    return addresses[0]


def _whole_seconds(flag: str, low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not text.isdigit() or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(
                f"{flag} must be a whole number of seconds from {low} to {high}, not {text!r}")
        return int(text)

    return parse


def _store_url(text: str) -> str:
    from podium.manager.store import check_url

    try:
        return check_url(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _etcd_url(text: str) -> str:
    if text == "sqlite":
        raise argparse.ArgumentTypeError("expected an etcd URL: etcd://HOST:PORT[,...][/PREFIX] "
                                         "or etcds://...")
    return _store_url(text)


def _tls_files(args: argparse.Namespace) -> Any:
    import pathlib

    from podium.manager.store import EtcdTlsFiles

    def path(value: str | None) -> pathlib.Path | None:
        return None if value is None else pathlib.Path(value).expanduser()

    return EtcdTlsFiles(path(args.etcd_ca), path(args.etcd_cert), path(args.etcd_key))


def _metrics_listen(text: str) -> str:
    try:
        metricsserver.parse_listen(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--metrics-listen: {err}") from None
    return text


def _dashboard_listen(text: str) -> str:
    try:
        metricsserver.parse_listen(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--dashboard: {err}") from None
    return text


def _range(text: str) -> str:
    try:
        network.parse_range(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--virtual-ip-range: {err}") from None
    return text


def _seconds(flag: str, low: float, high: float, *,
             unit: str = "seconds") -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"{flag} must be a number of {unit} from {low:g} to {high:g}, not {text!r}")
        return value

    return parse


def run(args: argparse.Namespace) -> int:
    action = getattr(args, "manager_action", None)
    if action == "migrate":
        return _run_migrate(args)
    if action == "etcd-cert":
        return _run_etcd_cert(args)
    if action is not None:
        return _run_archive(action, args)
    if args.data_dir is None:
        print("error: the manager needs --data-dir DIR", file=sys.stderr)
        return 2
    import asyncio
    import datetime
    import pathlib

    from podium.manager.manager import Manager
    from podium.rules.notify import Notifier

    notifier = Notifier.from_environment()  # before anything could start a child process
    admin = None if args.admin_credentials == "none" else \
        pathlib.Path(args.admin_credentials).expanduser()
    manager = Manager(
        listen=args.listen, data_dir=args.data_dir, heartbeat_period=args.heartbeat_period,
        heartbeats_per_second=args.heartbeats_per_second, down_grace=args.down_grace,
        restart_grace=args.agent_restart_grace,
        probe_timeout=args.probe_timeout, virtual_ip_range=args.virtual_ip_range,
        handshake_timeout=args.handshake_timeout, join_listen=args.join_listen,
        names=tuple(args.san), admin_credentials=admin,
        node_cert_lifetime=datetime.timedelta(seconds=args.node_cert_lifetime),
        metrics_listen=args.metrics_listen, dashboard_listen=args.dashboard, notifier=notifier,
        store=args.store, etcd_tls=_tls_files(args), advertise=args.advertise,
        leader_ttl=args.leader_ttl,
    )
    from podium.manager.store import SealingError, StoreError

    try:
        asyncio.run(daemon.serve_until_signalled(manager, notifier))
    except SealingError as err:  # secrets it cannot read: refuse to start, and say why
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (StoreError, ValueError) as err:  # etcd out of reach, a TLS file it cannot read
        print(f"error: store {args.store}: {err}", file=sys.stderr)
        return 1
    return 0


def _run_migrate(args: argparse.Namespace) -> int:
    import asyncio
    import pathlib

    from podium.manager.store import SealingError, StoreError, migrate

    data_dir = None if args.data_dir is None else pathlib.Path(args.data_dir).expanduser()
    try:
        if (args.to is None) == (args.source is None):
            raise ValueError("give either --to URL (from --data-dir's state.db into etcd) or "
                             "--from URL (out of etcd, with --to-data-dir)")
        if args.to is not None:
            if data_dir is None:
                raise ValueError("--to needs --data-dir: the data dir whose state.db to copy")
            count = asyncio.run(migrate.to_etcd(data_dir, args.to, _tls_files(args)))
            print(f"copied {count} object(s) from {data_dir / 'state.db'} into {args.to}\n"
                  f"Start each manager with --store {args.to} and a copy of {data_dir}'s "
                  "keys/ and pki/ in its data dir.")
        else:
            if args.to_data_dir is None:
                raise ValueError("--from needs --to-data-dir: the data dir to write state.db in")
            target = pathlib.Path(args.to_data_dir).expanduser()
            count = asyncio.run(migrate.from_etcd(args.source, target, data_dir,
                                                  _tls_files(args)))
            print(f"copied {count} object(s) from {args.source} into {target / 'state.db'}\n"
                  f"Start one manager with --data-dir {target} (and no --store).")
    except (migrate.MigrateError, SealingError, StoreError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def _run_etcd_cert(args: argparse.Namespace) -> int:
    import pathlib

    from podium.manager.store import migrate

    try:
        written = migrate.issue_etcd_certificate(
            pathlib.Path(args.data_dir).expanduser(), args.name, tuple(args.host),
            pathlib.Path(args.out).expanduser())
    except (migrate.MigrateError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    crt, key, ca = written
    print(f"wrote {crt}, {key} (mode 0600) and {ca}\nRun the member with:\n"
          f"  --cert-file {crt} --key-file {key} --client-cert-auth --trusted-ca-file {ca}\n"
          f"  (and --peer-cert-file {crt} --peer-key-file {key} --peer-client-cert-auth "
          f"--peer-trusted-ca-file {ca} for TLS between members)")
    return 0


def _run_archive(action: str, args: argparse.Namespace) -> int:
    from podium.manager.backup import BackupError, backup, restore

    try:
        if action == "backup":
            members = backup(args.data_dir, args.file)
        else:
            members = restore(args.file, args.data_dir)
    except BackupError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    size = sum(m.size for m in members)
    names = ", ".join(m.name for m in members)
    if action == "backup":
        print(f"wrote {args.file} (mode 0600): {names} ({size} bytes)\n"
              "It holds the cluster CA's private key and the secrets key: whoever has it can "
              "read every secret and act as any node or user. Keep it as secret as the data "
              "dir itself.")
    else:
        print(f"restored {names} ({size} bytes) into {args.data_dir}\n"
              f"Start the manager with --data-dir {args.data_dir} at the address the agents "
              "join (the old one): they reconnect with their certificates.")
    return 0


def main(argv: list[str] | None = None) -> int:
    return daemon.main(argv, prog="podium manager", description="Run a manager.",
                       add_arguments=add_arguments, run=run)


if __name__ == "__main__":
    sys.exit(main())
