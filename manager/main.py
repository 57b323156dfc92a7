"""The manager daemon's entry point: `podium manager ...` or `python -m podium.manager ...`.

Argument parsing imports nothing heavy, so that `podium --help` stays fast; the manager itself
is imported only when it runs. SIGTERM and SIGINT stop it cleanly (`Manager.stop()`).
"""

from __future__ import annotations

import argparse
import sys

from podium.rules import daemon


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listen", default="0.0.0.0:7070", help="address to serve on")
    p.add_argument("--data-dir", required=True, help="where the manager keeps its state")
    p.add_argument("--heartbeat-period", type=float, default=1.0, help="seconds")
    p.add_argument(
        "--down-grace", type=float, default=1.0,
        help="seconds a node whose session broke stays suspect before it is down and its tasks "
        "move (default %(default)s); a restarted agent that reconnects within it keeps its tasks",
    )


def run(args: argparse.Namespace) -> int:
    import asyncio

    from podium.manager.manager import Manager

    manager = Manager(
        listen=args.listen, data_dir=args.data_dir, heartbeat_period=args.heartbeat_period,
        down_grace=args.down_grace,
    )
    asyncio.run(daemon.serve_until_signalled(manager))
    return 0


def main(argv: list[str] | None = None) -> int:
    return daemon.main(argv, prog="podium manager", description="Run a manager.",
                       add_arguments=add_arguments, run=run)


if __name__ == "__main__":
    sys.exit(main())
