"""TCP routes between network namespaces on one machine, for the fault lab (podium.lab.nemesis):
`python -m podium.lab._nsbridge ROUTES.json`, run in the root namespace as root.

Each route listens on a loopback address inside one namespace and connects each accepted client
to a loopback address inside another, optionally from a chosen source address there (so that
iptables rules in the target namespace can tell one kind of client from another). A namespace is
named by its file (/run/netns/NAME) or null for the root namespace.

Why a process of its own rather than veths and a bridge: the managers, the etcd members and the
agents keep their loopback addresses (nothing else changes for them), the root namespace gets no
link, address or firewall rule, and a partition is still real: iptables DROP inside a manager's
namespace drops the packets between the manager and this process, so the manager's connections
hang exactly as they would across a broken network.

A socket belongs to the namespace of the thread that made it, so this process (one thread: the
event loop's) switches its namespace with setns(2) around each socket() call and back at once.
It prints `ready` once every listener is open.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import socket
import sys
from collections.abc import Iterator
from typing import Any

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class Namespaces:
    """Open namespace files, and sockets made inside them."""

    def __init__(self) -> None:
        self._root = os.open("/proc/self/ns/net", os.O_RDONLY)
        self._fds: dict[str, int] = {}

    @contextlib.contextmanager
    def inside(self, path: str | None) -> Iterator[None]:
        if path is None:
            yield
            return
        if path not in self._fds:
            self._fds[path] = os.open(path, os.O_RDONLY)
        _setns(self._fds[path])
        try:
            yield
        finally:
            _setns(self._root)

    def socket(self, path: str | None) -> socket.socket:
        with self.inside(path):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        return sock


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()


class Route:
    def __init__(self, spaces: Namespaces, spec: dict[str, Any]) -> None:
        self.spaces = spaces
        self.spec = spec
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> asyncio.Server:
        listener = self.spaces.socket(self.spec.get("listen_ns"))
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(_split(self.spec["listen"]))
        listener.listen(512)
        return await asyncio.start_server(self._serve, sock=listener)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            sock = self.spaces.socket(self.spec.get("connect_ns"))
            try:
                if self.spec.get("source"):
                    sock.bind((self.spec["source"], 0))
                async with asyncio.timeout(5):
                    await asyncio.get_running_loop().sock_connect(
                        sock, _split(self.spec["connect"]))
            except (TimeoutError, OSError):
                sock.close()
                writer.close()
                return
            up_reader, up_writer = await asyncio.open_connection(sock=sock)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self.tasks.discard(task)


async def main(routes: list[dict[str, Any]]) -> None:
    spaces = Namespaces()
    servers = [await Route(spaces, spec).start() for spec in routes]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    for server in servers:
        server.close()


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        asyncio.run(main(json.load(f)))
