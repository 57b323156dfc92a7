"""How a Podium daemon process runs, the same for the manager and the agent (systemd and the
tests rely on it): parse its arguments, log to stderr (readable text, or with `--log-format json`
one JSON object per line: time, level, logger, message, and exception when there is one), start,
serve until SIGTERM or SIGINT (or until a component fails), then stop cleanly. Imports nothing
heavy until it runs.

Under systemd (`Type=notify`, podium.rules.notify) the daemon itself says READY=1 when it really
serves; this module feeds the watchdog from the daemon's event loop for as long as it runs and
says STOPPING=1 when it begins to stop."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from podium.rules.notify import Notifier

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class Daemon(Protocol):
    async def start(self) -> None: ...
    async def serve_forever(self) -> None: ...
    async def stop(self) -> None: ...


async def serve_until_signalled(daemon: Daemon, notifier: Notifier | None = None) -> None:
    """start(), serve_forever() until SIGTERM or SIGINT, stop(); the watchdog of `notifier` is
    fed throughout, and STOPPING=1 goes before stop(). A fatal signal (systemd's watchdog sends
    SIGABRT) writes every thread's Python traceback to stderr first: where the loop was stuck."""
    import asyncio
    import faulthandler
    import signal
    import sys

    if not faulthandler.is_enabled():
        faulthandler.enable(file=sys.stderr, all_threads=True)

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
    add_log_format(parser)
    args = parser.parse_args(argv)
    configure_logging(args.log_format, level=logging.DEBUG if args.verbose else logging.INFO)
    return run(args)


def add_log_format(parser: argparse.ArgumentParser) -> None:
    """The daemons' --log-format flag (here and in the `podium manager|agent` commands)."""
    parser.add_argument("--log-format", choices=LOG_FORMATS, default="text",
                        help="how the daemon's own log lines are written to stderr: readable "
                        "text, or one JSON object per line with time, level, logger, message "
                        "and exception (default %(default)s)")


class JsonFormatter(logging.Formatter):
    """One JSON object per event, on one line: `time` (UTC, ISO 8601 with milliseconds),
    `level`, `logger`, `message`, and `exception` (the traceback's text) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        import datetime

        at = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        event: dict[str, str] = {
            "time": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            event["exception"] = record.exc_text
        if record.stack_info:
            event["stack"] = self.formatStack(record.stack_info)
        return json.dumps(event, ensure_ascii=False)


def configure_logging(log_format: str, *, level: int = logging.INFO) -> None:
    """The root logger to stderr in `log_format` ('text' or 'json'); ValueError otherwise.
    Like logging.basicConfig(), it does nothing when the root logger has a handler already
    (a daemon run inside a test's process keeps the test's)."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format {log_format!r}: expected one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json"
                         else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
    if log_format == "json":
        logging.captureWarnings(True)  # a library's warnings as events too, not bare lines


__all__ = ["LOG_FORMATS", "Daemon", "JsonFormatter", "add_log_format", "configure_logging",
           "main", "serve_until_signalled"]
