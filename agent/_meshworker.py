"""One mesh worker process: a `podium.agent.proxy.Mesh` driven over a socket by `MeshPool`.

    python -m podium.agent._meshworker --fd FD --sockets-fd FD2 --host HOST --connect-timeout S

FD is this process's end of a Unix stream socket pair; the other end belongs to the agent.
Messages are msgpack arrays, streamed back to back in both directions (see `encode_specs`):

- agent -> worker: `["apply", seq, specs]`: make exactly these ports listen; the worker answers
  `["applied", seq, errors]`.
- worker -> agent: `["stats", [[port, {key: connections}], ...], [[port, {key: requests}], ...],
  [[port, traffic], ...]]` whenever its counts changed, looked at every `STATS_PERIOD` seconds:
  open connections, the requests forwarded and the traffic (`Traffic.encode()`: bytes, failed
  backend connections, connect times) since this worker started (`Mesh.requests()`,
  `Mesh.traffic()`, counters; a worker started again starts from 0, and the pool keeps what the
  old one had reported).

The agent binds every published port itself, once, and hands each worker the listening socket
over FD2, a Unix datagram socket pair: one datagram per socket, its port number in ASCII with
the descriptor attached (SCM_RIGHTS), always sent before the apply that needs it. All workers
accept from that one socket, so an idle worker takes the next connection (no hashing of
connections onto a busy one), and a worker that dies loses none queued for it.

The worker lives exactly as long as its socket: at EOF (the agent stopped, or died, even by
SIGKILL) it aborts its connections and exits. Should it be too stuck to notice, the kernel kills
it when the agent dies (PR_SET_PDEATHSIG, on Linux). SIGINT is ignored (a terminal's Ctrl-C
reaches the whole process group; the agent decides when its workers stop). It imports only the
proxy and msgpack, never the agent's gRPC or Docker stacks, so that it stays small.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Mapping
from typing import Any

import msgpack

from podium.agent.meshspec import CONNECT_TIMEOUT_S, Endpoint, ListenerSpec
from podium.agent.proxy import Mesh, new_event_loop

STATS_PERIOD = 0.2  # seconds between looks at the connection counts

# The wire form of a mesh's wanted state: [[port, [[key, host, port], ...], balance, proxy], ...]
WireSpecs = list[list[Any]]


def encode_specs(wanted: Mapping[int, ListenerSpec]) -> WireSpecs:
    return [[port, [[e.key, e.host, e.port] for e in spec.endpoints], spec.balance,
             spec.proxy_protocol] for port, spec in sorted(wanted.items())]


def decode_specs(wire: WireSpecs) -> dict[int, ListenerSpec]:
    return {int(port): ListenerSpec(endpoints=tuple(Endpoint(str(k), str(h), int(p))
                                                    for k, h, p in endpoints),
                                    balance=str(balance), proxy_protocol=bool(proxy))
            for port, endpoints, balance, proxy in wire}


def encode_stats(stats: Mapping[int, Mapping[str, int]]) -> list[list[Any]]:
    return [[port, dict(counts)] for port, counts in sorted(stats.items())]


def decode_stats(wire: list[list[Any]]) -> dict[int, dict[str, int]]:
    return {int(port): {str(k): int(n) for k, n in counts.items()} for port, counts in wire}


class Handed:
    """The listening sockets the agent has sent and no listener has taken yet."""

    def __init__(self, channel: socket.socket) -> None:
        self._channel = channel
        # Non-blocking: socket.recv_fds ignores its flags (MSG_DONTWAIT) before Python 3.12.
        channel.setblocking(False)
        self._sockets: dict[int, socket.socket] = {}

    def receive(self) -> None:
        """Takes every socket waiting on the channel (they were sent before the apply)."""
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self._channel, 32, 1)
            except BlockingIOError:
                return
            if not fds:
                return  # not one of the agent's datagrams: nothing more to take
            port = int(data)
            sock = socket.socket(fileno=fds[0])
            sock.setblocking(False)
            old = self._sockets.pop(port, None)
            if old is not None:  # sent again (the port was re-bound): the newest one counts
                old.close()
            self._sockets[port] = sock

    def take(self, port: int) -> socket.socket:
        return self._sockets.pop(port)

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()
        self._channel.close()


async def serve(fd: int, sockets_fd: int, host: str, connect_timeout: float) -> None:
    reader, writer = await asyncio.open_unix_connection(sock=socket.socket(fileno=fd))
    handed = Handed(socket.socket(fileno=sockets_fd))
    unpacker = msgpack.Unpacker(raw=False)

    def send(message: list[Any]) -> None:
        writer.write(msgpack.packb(message))

    async def report_stats() -> None:
        last: tuple[Any, ...] = ()
        while True:
            await asyncio.sleep(STATS_PERIOD)
            now = mesh.stats(), mesh.requests(), mesh.traffic()
            if now != last:
                send(["stats", encode_stats(now[0]), encode_stats(now[1]),
                      [[port, traffic.encode()] for port, traffic in sorted(now[2].items())]])
                last = now

    async with Mesh(host=host, connect_timeout=connect_timeout, sockets=handed.take) as mesh:
        reporter = asyncio.create_task(report_stats())
        try:
            while chunk := await reader.read(65536):
                unpacker.feed(chunk)
                for message in unpacker:
                    if message[0] == "apply":
                        handed.receive()
                        errors = await mesh.apply(decode_specs(message[2]))
                        send(["applied", message[1], errors])
                await writer.drain()
        except ConnectionError:
            pass  # the agent is gone: as at EOF
        finally:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
            writer.close()
            handed.close()


PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Asks the kernel for SIGKILL when the agent exits (Linux); exits at once if it already
    has (the worker was started just before the agent died)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes  # here: the agent imports this module too, and needs no ctypes
    import ctypes.util

    parent = os.getppid()
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        raise SystemExit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--sockets-fd", type=int, required=True)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--connect-timeout", type=float, default=CONNECT_TIMEOUT_S)
    args = parser.parse_args(argv)
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(serve(args.fd, args.sockets_fd, args.host, args.connect_timeout))


if __name__ == "__main__":
    main()
