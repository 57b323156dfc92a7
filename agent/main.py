"""The agent daemon's entry point: `podium agent ...` or `python -m podium.agent ...`.

Argument parsing imports nothing heavy, so that `podium --help` stays fast; the agent, its Docker
executor and the mesh are imported only when it runs. SIGTERM and SIGINT stop it cleanly
(`Agent.stop()`): its containers keep running for the next agent to adopt.
"""

from __future__ import annotations

import argparse
import os
import sys

from podium.rules import daemon, metricsserver

MAX_DEFAULT_WORKERS = 4


def default_workers() -> int:
    """One mesh worker per core this process may run on, at most MAX_DEFAULT_WORKERS; 0 (the
    proxy in the agent's own event loop) on a single core, where a second process would only add
    memory."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    return min(cores, MAX_DEFAULT_WORKERS) if cores > 1 else 0


def _mesh_workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 64:
        raise argparse.ArgumentTypeError(f"--mesh-workers must be a whole number from 0 to 64, "
                                         f"not {text!r}")
    return value


def _label(pair: str) -> tuple[str, str]:
    key, eq, value = pair.partition("=")
    if not eq or not key:
        raise argparse.ArgumentTypeError(f"--label {pair!r}: expected KEY=VALUE")
    return key, value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--join", required=True, metavar="HOST:PORT[,HOST:PORT...]",
                   help="the manager's address, or every manager's (managers sharing an etcd "
                   "store: the agent finds the leader and follows it)")
    token = p.add_mutually_exclusive_group()
    token.add_argument("--token", default=None,
                       help="the cluster's join token (`podium token agent` prints it); needed "
                       "when this node has no certificate in force yet")
    token.add_argument("--token-file", default=None, metavar="PATH",
                       help="a file holding the join token (keeps it out of the process list)")
    p.add_argument("--join-address", default=None, metavar="HOST:PORT[,HOST:PORT...]",
                   help="the managers' join ports (default: each --join address's host and "
                   "the next port)")
    p.add_argument("--name", required=True, help="node name, unique in the cluster")
    p.add_argument("--data-dir", required=True, help="where the agent keeps its node id")
    p.add_argument("--docker-host", default=None, help="engine URL, e.g. unix:///run/docker.sock")
    p.add_argument("--label", type=_label, action="append", default=[],
                   help="node label KEY=VALUE (repeatable)")
    p.add_argument("--mesh", choices=("asyncio", "kernel"), default="asyncio",
                   help="routing mesh data path: the asyncio proxy (default) or nftables DNAT")
    p.add_argument("--mesh-workers", type=_mesh_workers, default=default_workers(),
                   metavar="N",
                   help="processes running the asyncio proxy, each accepting on every published "
                   "port; 0 runs it in the agent's own event loop (default: one per core, at "
                   f"most {MAX_DEFAULT_WORKERS}, or 0 on one core: %(default)s here)")


    p.add_argument("--relay-port", type=_relay_port, default=DEFAULT_RELAY_PORT, metavar="PORT",
                   help="TCP port other nodes reach this node's replicas through for "
                   "service-to-service connections; 0: any free port; 'off': services on "
                   "networks are not reachable by name on this node (default %(default)s)")
    p.add_argument("--metrics-listen", type=_metrics_listen, default="127.0.0.1:9471",
                   metavar="HOST:PORT",
                   help="address to serve Prometheus metrics on, plain HTTP at /metrics "
                   "('off': none; default %(default)s)")


DEFAULT_RELAY_PORT = 7947


def _metrics_listen(text: str) -> str:
    try:
        metricsserver.parse_listen(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--metrics-listen: {err}") from None
    return text


def _relay_port(text: str) -> int | None:
    if text == "off":
        return None
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"--relay-port must be 0-65535 or 'off', not {text!r}")
    return int(text)


def run(args: argparse.Namespace) -> int:
    import asyncio
    import pathlib

    from podium.agent._docker import DockerExecutor
    from podium.agent.agent import Agent, load_node_id
    from podium.agent.certificate import JoinError, NodeCertificate
    from podium.agent.proxy import new_event_loop
    from podium.agent.secretfiles import SecretFiles
    from podium.rules.certs import JoinToken, TokenError
    from podium.rules.notify import Notifier

    # First: the mesh's worker processes must not inherit NOTIFY_SOCKET.
    notifier = Notifier.from_environment()

    data_dir = pathlib.Path(args.data_dir)
    node_id = load_node_id(data_dir)
    token = None
    try:
        text = args.token if args.token_file is None else \
            pathlib.Path(args.token_file).read_text()
        token = JoinToken.parse(text) if text is not None else None
    except (OSError, TokenError) as err:
        sys.exit(f"podium agent: {'--token-file' if args.token_file else '--token'}: {err}")
    from podium.rules import managers

    try:
        join_address = args.join_address or ",".join(
            f"{host}:{int(port) + 1}" for host, _, port in
            (address.rpartition(":") for address in managers.parse(args.join, what="--join")))
        managers.parse(join_address, what="--join-address")
    except ValueError as err:
        sys.exit(f"podium agent: {err}")
    certificate = NodeCertificate(data_dir=data_dir, node_id=node_id, manager=args.join,
                                  token=token, join_address=join_address)

    async def serve() -> None:
        try:
            async with notifier.watchdog():
                notifier.status(f"starting (joining at {join_address} unless the node's "
                                "certificate is in force)")
                await certificate.ensure_with_retries()
        except JoinError as err:
            sys.exit(f"podium agent: {err}")
        files = SecretFiles(data_dir / "secrets")
        executor = DockerExecutor(node_id=node_id, docker_host=args.docker_host,
                                  secret_files=files, node_name=args.name)
        await daemon.serve_until_signalled(Agent(
            manager=args.join, name=args.name, node_id=node_id, executor=executor,
            labels=dict(args.label), mesh=args.mesh, mesh_workers=args.mesh_workers,
            relay_port=args.relay_port, secret_files=files, certificate=certificate,
            metrics_listen=args.metrics_listen, notifier=notifier,
        ), notifier)

    # uvloop where installed: the mesh's data path is markedly faster on it.
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(serve())
    return 0


def main(argv: list[str] | None = None) -> int:
    return daemon.main(argv, prog="podium agent", description="Run an agent on this host.",
                       add_arguments=add_arguments, run=run)


if __name__ == "__main__":
    sys.exit(main())
