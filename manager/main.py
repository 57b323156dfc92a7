"""The manager daemon's entry point: `podium manager ...` or `python -m podium.manager ...`.

Argument parsing imports nothing heavy, so that `podium --help` stays fast; the manager itself
is imported only when it runs. SIGTERM and SIGINT stop it cleanly (`Manager.stop()`).
"""

from __future__ import annotations

import argparse
import sys


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
    import signal

    from podium.manager.manager import Manager

    manager = Manager(
        listen=args.listen, data_dir=args.data_dir, heartbeat_period=args.heartbeat_period,
        down_grace=args.down_grace,
    )

    async def serve() -> None:
        await manager.start()
        try:
            serving = asyncio.ensure_future(manager.serve_forever())
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, serving.cancel)
            try:
                await serving
            except asyncio.CancelledError:
                pass
        finally:
            await manager.stop()

    asyncio.run(serve())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="podium manager", description="Run a manager.")
    add_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
