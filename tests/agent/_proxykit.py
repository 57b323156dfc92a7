"""Shared by the mesh tests: asyncio test backends and clients on 127.0.0.1.

Waits poll with a deadline (tests.helpers.eventually_async), never a bare sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TypeVar

from podium.agent.meshspec import Endpoint
from podium.agent.relay import Relay
from tests.helpers import eventually_async, free_port

__all__ = ["HOST", "LOOPS", "Backend", "Client", "Run", "ask", "free_port", "full_accept_queue",
           "serving_relay"]

# The event loops every mesh test runs on (the `run` fixture of tests/agent/conftest.py): the
# proxy must work on whichever loop runs it.
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {"asyncio": asyncio.new_event_loop}
with contextlib.suppress(ImportError):
    import uvloop

    LOOPS["uvloop"] = uvloop.new_event_loop

Run = Callable[[Callable[[], Awaitable[None]]], None]

T = TypeVar("T")
HOST = "127.0.0.1"


@contextlib.contextmanager
def full_accept_queue() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A listening socket on 127.0.0.1 whose accept queue one connection fills: Linux drops
    further SYNs, so a connect to it hangs (until the queue drains and the kernel retransmits).
    Yields the listening socket and the connection that fills it."""
    with socket.socket() as listening, socket.socket() as filler:
        listening.bind((HOST, 0))
        listening.listen(0)
        filler.connect(listening.getsockname())
        yield listening, filler


class Backend:
    """A test server on 127.0.0.1. Modes: "name" answers each line with its name; "echo" echoes
    and, on EOF, sends b"bye" and closes; "greet" sends b"hello", half-closes and records what
    it receives until EOF; "sink" reads nothing until `release` is set, then records all;
    "slam" closes each connection at once; "http" answers each HTTP/1.1 request (headers only)
    with `200 OK` and its name as the body, keeping the connection open."""

    def __init__(self, name: str, mode: str = "name") -> None:
        self.name, self.mode = name, mode
        self.received: list[bytes] = []
        self.release = asyncio.Event()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.name, HOST, self.port)

    async def __aenter__(self) -> Backend:
        self._server = await asyncio.start_server(self._serve, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await eventually_async(lambda: not self._writers, what=f"backend {self.name} closed")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            if self.mode == "name":
                while await reader.readline():
                    writer.write(self.name.encode() + b"\n")
            elif self.mode == "echo":
                while data := await reader.read(1 << 16):
                    writer.write(data)
                    await writer.drain()
                writer.write(b"bye")
            elif self.mode == "greet":
                writer.write(b"hello")
                writer.write_eof()
                self.received.append(await reader.read())
            elif self.mode == "http":
                while head := await reader.readuntil(b"\r\n\r\n"):
                    self.received.append(head)
                    body = self.name.encode()
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                                 % (len(body), body))
            elif self.mode == "slam":
                pass
            elif self.mode == "sink":
                await self.release.wait()
                self.received.append(await reader.read())
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._writers.discard(writer)


class Client:
    """A connection to a proxy port."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> Client:
        return cls(*await asyncio.open_connection(HOST, port))

    async def ask(self) -> str:
        """Which backend answers a line ("" when the proxy closed the connection)."""
        self.writer.write(b"?\n")
        return (await self.reader.readline()).decode().strip()

    async def get(self, path: str = "/") -> str:
        """One HTTP/1.1 request on this connection, kept alive: the body of the answer."""
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        return (await self.reader.readexactly(length)).decode()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def ask(port: int) -> str:
    """One request on a new connection: the name of the backend that answered it."""
    client = await Client.connect(port)
    try:
        return await client.ask()
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def serving_relay(known: dict[tuple[str, int], str]) -> AsyncIterator[Relay]:
    """A relay on 127.0.0.1 that knows the replicas `known`: (task id, port) -> address."""
    relay = Relay(lookup=lambda task, port: known.get((task, port)), host=HOST, port=0,
                  connect_timeout=0.5)
    await relay.start()
    try:
        yield relay
    finally:
        await relay.close()
