"""The relay: how another node's mesh reaches this node's replicas for internal connections.

A replica's container address is reachable from its own node only. A node whose virtual IP
listener picks a replica on another node connects to that node's relay instead, and sends one
line first (`preamble`): `PODIUM-RELAY <task id> <port>\\n`. The relay looks the replica up
(`lookup(task_id, port)`: its container address when the task is a replica in rotation and the
port one its service serves internally, else None), connects to it within `connect_timeout`,
answers b"+" and then copies bytes both ways until either side closes; when it cannot, it
answers b"-" and closes, and the other node's mesh tries another replica
(podium.agent.proxy). Only replicas in the routing tables, on their services' internal ports,
can be reached this way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

MAGIC = b"PODIUM-RELAY"
MAX_LINE = 128  # bytes: the preamble line, with a task id of up to ~100 characters
READ_TIMEOUT_S = 2.0  # for the preamble
CHUNK = 64 * 1024


def preamble(task_id: str, port: int) -> bytes:
    return b"%s %s %d\n" % (MAGIC, task_id.encode("ascii"), port)


def parse_preamble(line: bytes) -> tuple[str, int] | None:
    parts = line.strip().split(b" ")
    if len(parts) != 3 or parts[0] != MAGIC or not parts[2].isdigit():
        return None
    try:
        return parts[1].decode("ascii"), int(parts[2])
    except UnicodeDecodeError:
        return None


class Relay:
    """Serves the relay port until `close()`."""

    def __init__(self, *, lookup: Callable[[str, int], str | None], host: str = "0.0.0.0",
                 port: int, connect_timeout: float = 1.0) -> None:
        self._lookup = lookup
        self._host = host
        self.port = port
        self._connect_timeout = connect_timeout
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self._host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass  # either side went away
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        async with asyncio.timeout(READ_TIMEOUT_S):
            line = await client_r.readuntil(b"\n")
        wanted = parse_preamble(line) if len(line) <= MAX_LINE else None
        if wanted is None:
            client_w.write(b"-")
            return
        task_id, port = wanted
        address = self._lookup(task_id, port)
        if address is None:
            client_w.write(b"-")
            return
        try:
            async with asyncio.timeout(self._connect_timeout):
                backend_r, backend_w = await asyncio.open_connection(address, port)
        except (OSError, TimeoutError):
            client_w.write(b"-")
            return
        client_w.write(b"+")
        try:
            await asyncio.gather(_copy(client_r, backend_w), _copy(backend_r, client_w))
        finally:
            backend_w.close()

    async def close(self) -> None:
        """Stops serving and ends every relayed connection; idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for handler in list(self._handlers):
            handler.cancel()
        for handler in list(self._handlers):
            with contextlib.suppress(asyncio.CancelledError):
                await handler
        if server is not None:
            await server.wait_closed()


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copies until EOF, then passes the EOF on (half-close)."""
    while data := await reader.read(CHUNK):
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()
