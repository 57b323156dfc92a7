"""How a Podium daemon process runs, the same for the manager and the agent (systemd and the
tests rely on it): parse its arguments, log to stderr, start, serve until SIGTERM or SIGINT (or
until a component fails), then stop cleanly. Imports nothing heavy until it runs.

Under systemd (`Type=notify`, podium.rules.notify) the daemon itself says READY=1 when it really
serves; this module feeds the watchdog from the daemon's event loop for as long as it runs and
says STOPPING=1 when it begins to stop."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from podium.rules.notify import Notifier


class Daemon(Protocol):
    async def start(self) -> None: ...
    async def serve_forever(self) -> None: ...
    async def stop(self) -> None: ...


async def serve_until_signalled(daemon: Daemon, notifier: Notifier | None = None) -> None:
    """start(), serve_forever() until SIGTERM or SIGINT, stop(); the watchdog of `notifier` is
    fed throughout, and STOPPING=1 goes before stop()."""
    import asyncio
    import signal

    from podium.rules.notify import Notifier

    notifier = notifier or Notifier()
    async with notifier.watchdog():
        await daemon.start()
        why = "stopping"
        try:
            serving = asyncio.ensure_future(daemon.serve_forever())
            loop = asyncio.get_running_loop()

            def on_signal(sig: signal.Signals) -> None:
                nonlocal why
                why = f"stopping on {sig.name}"
                serving.cancel()

            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, on_signal, sig)
            try:
                await serving
            except asyncio.CancelledError:
                pass
            except Exception as err:
                why = f"stopping: {err!r}"
                raise
        finally:
            notifier.stopping(why)
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
