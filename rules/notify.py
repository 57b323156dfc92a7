"""Telling systemd how a daemon is doing (the sd_notify protocol), without a dependency.

systemd starts a `Type=notify` service with `NOTIFY_SOCKET` set: a unix datagram socket (a path,
or an abstract name written with a leading '@'). The service sends newline-separated
`VAR=value` assignments to it: `READY=1` once it really serves, `STATUS=...` a line shown by
`systemctl status`, `STOPPING=1` when it begins to stop, and `WATCHDOG=1` at least every
`WATCHDOG_USEC` microseconds when the unit has `WatchdogSec=` (systemd restarts it otherwise).

`Notifier.from_environment()` reads those variables and removes them from the process's
environment, so that no child (the mesh's worker processes) speaks for the daemon. Without
`NOTIFY_SOCKET` every method does nothing. The watchdog is fed by a task of the daemon's own event
loop (`watchdog()`), every half `WATCHDOG_USEC`: a loop that is wedged stops the pings, and
systemd restarts the daemon. It is fed only when `WATCHDOG_PID` is unset or is this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, MutableMapping

log = logging.getLogger(__name__)

ENVIRONMENT = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def socket_address(text: str) -> str | bytes:
    """NOTIFY_SOCKET's value as an address for socket.sendto(): a path, or an abstract name
    ('@name' -> b'\\0name'). ValueError for anything else."""
    if text.startswith("/") and len(text) > 1:
        return text
    if text.startswith("@") and len(text) > 1:
        return b"\0" + text[1:].encode()
    raise ValueError(f"NOTIFY_SOCKET={text!r}: expected an absolute path or an abstract "
                     "socket name starting with '@'")


def watchdog_seconds(usec: str | None, pid: str | None, *, own_pid: int) -> float | None:
    """The watchdog's timeout in seconds when this process must feed it, else None.
    ValueError (naming the variable) when a value is not a positive whole number."""
    if not usec:
        return None
    if not usec.isdigit() or int(usec) == 0:
        raise ValueError(f"WATCHDOG_USEC={usec!r}: expected a positive number of microseconds")
    if pid:
        if not pid.isdigit():
            raise ValueError(f"WATCHDOG_PID={pid!r}: expected a process id")
        if int(pid) != own_pid:
            return None  # meant for another process (the one that exec'd us would be the same)
    return int(usec) / 1e6


class Notifier:
    """sd_notify(3) for one daemon. `address`: where to send (None: nowhere, every call does
    nothing); `watchdog`: the watchdog's timeout in seconds (None: no watchdog to feed)."""

    def __init__(self, address: str | bytes | None = None, *,
                 watchdog: float | None = None) -> None:
        self._address = address
        self.watchdog_timeout = watchdog if address is not None else None
        self._socket: socket.socket | None = None
        self._status: str | None = None
        self._failed = False  # a failed send is logged once, not at every ping

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] | None = None, *,
                         pid: int | None = None, unset: bool = True) -> Notifier:
        """From NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID, which are then removed from
        `environ` (default: the process's) unless `unset` is false. A malformed value is
        logged with what it should be, and that part is left off: a daemon is not stopped
        from running by its supervisor's variables."""
        env = os.environ if environ is None else environ
        values = {name: env.get(name) for name in ENVIRONMENT}
        if unset:
            for name in ENVIRONMENT:
                env.pop(name, None)
        if not values["NOTIFY_SOCKET"]:
            return cls()
        try:
            address = socket_address(values["NOTIFY_SOCKET"])
        except ValueError as err:
            log.warning("not notifying systemd: %s", err)
            return cls()
        try:
            watchdog = watchdog_seconds(values["WATCHDOG_USEC"], values["WATCHDOG_PID"],
                                        own_pid=os.getpid() if pid is None else pid)
        except ValueError as err:
            log.warning("not feeding systemd's watchdog: %s", err)
            watchdog = None
        return cls(address, watchdog=watchdog)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, *assignments: str) -> bool:
        """Sends `VAR=value` assignments in one datagram; whether it went. Never blocks: a
        receiver that is not reading loses the message (systemd reads at once)."""
        if self._address is None:
            return False
        for item in assignments:
            name, eq, value = item.partition("=")
            if not eq or not name or "\n" in value:
                raise ValueError(f"{item!r}: expected one VAR=value line")
        try:
            if self._socket is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                sock.setblocking(False)
                self._socket = sock
            self._socket.sendto("\n".join(assignments).encode(), self._address)
        except OSError as err:
            if not self._failed:
                log.warning("cannot notify systemd at %r: %s", self._address, err)
            self._failed = True
            return False
        if self._failed:
            log.info("notifying systemd again")
            self._failed = False
        return True

    def ready(self, status: str) -> None:
        """The daemon serves: READY=1 with what it is doing."""
        self._status = _one_line(status)
        self.send("READY=1", f"STATUS={self._status}")

    def status(self, status: str) -> None:
        """What the daemon is doing now (sent only when it changed)."""
        line = _one_line(status)
        if line != self._status:
            self._status = line
            self.send(f"STATUS={line}")

    def stopping(self, status: str = "stopping") -> None:
        self._status = _one_line(status)
        self.send("STOPPING=1", f"STATUS={self._status}")

    async def feed_watchdog(self) -> None:
        """WATCHDOG=1 every half timeout, from this event loop, until cancelled; returns at
        once when there is no watchdog to feed."""
        if self.watchdog_timeout is None:
            return
        period = self.watchdog_timeout / 2
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(period)

    @contextlib.asynccontextmanager
    async def watchdog(self) -> AsyncIterator[None]:
        """Feeds the watchdog while the block runs."""
        feeding = asyncio.create_task(self.feed_watchdog(), name="watchdog")
        try:
            yield
        finally:
            feeding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeding

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _one_line(text: str) -> str:
    return " ".join(text.split())


__all__ = ["ENVIRONMENT", "Notifier", "socket_address", "watchdog_seconds"]
