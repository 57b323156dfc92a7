"""How a Podium daemon process runs, the same for the manager and the agent (systemd and the
tests rely on it): parse its arguments, log to stderr, start, serve until SIGTERM or SIGINT (or
until a component fails), then stop cleanly. Imports nothing heavy until it runs."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Protocol


class Daemon(Protocol):
    async def start(self) -> None: ...
    async def serve_forever(self) -> None: ...
    async def stop(self) -> None: ...


async def serve_until_signalled(daemon: Daemon) -> None:
    import asyncio
    import signal

    await daemon.start()
    try:
        serving = asyncio.ensure_future(daemon.serve_forever())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, serving.cancel)
        try:
            await serving
        except asyncio.CancelledError:
            pass
    finally:
        await daemon.stop()


def main(argv: list[str] | None, *, prog: str, description: str,
         add_arguments: Callable[[argparse.ArgumentParser], None],
         run: Callable[[argparse.Namespace], int]) -> int:
    """The daemon's command line: `prog [options]`, then run(args)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(args)


__all__ = ["Daemon", "main", "serve_until_signalled"]
