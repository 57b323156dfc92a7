"""The name server the agent runs for its node's containers (UDP, at the resolver address).

Containers on a Podium network are created with it as their first name server. A query for an
A record of a name `lookup(client address, name)` (awaited) knows (a service on one of the client's
networks) is answered with the service's virtual IP, TTL 0, so that a changed table is seen at
once (the address itself never changes while the service exists); any other record type of such a
name gets an empty answer. Any other name is forwarded to the node's own name servers
(`upstreams`, on `upstream_port`: 53) and their answer passed back; without an answer within
FORWARD_TIMEOUT_S the client gets SERVFAIL. At most MAX_QUERIES queries are handled at once;
more are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import pathlib
import struct
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

FORWARD_TIMEOUT_S = 2.0
MAX_QUERIES = 256
_A, _IN = 1, 1
_NOERROR, _SERVFAIL, _REFUSED = 0, 2, 5


def parse_question(packet: bytes) -> tuple[str, int, int] | None:
    """(lower-case name without the final dot, qtype, end of the question) of a standard
    query with one question, else None."""
    if len(packet) < 12:
        return None
    _, flags, qdcount = struct.unpack("!HHH", packet[:6])
    if flags & 0x8000 or (flags >> 11) & 0xF or qdcount != 1:  # a response, not QUERY, or !=1
        return None
    labels: list[str] = []
    at = 12
    while True:
        if at >= len(packet):
            return None
        length = packet[at]
        at += 1
        if length == 0:
            break
        if length > 63 or at + length > len(packet):
            return None  # compression pointers do not occur in a question
        labels.append(packet[at:at + length].decode("ascii", "replace").lower())
        at += length
    if at + 4 > len(packet):
        return None
    qtype, qclass = struct.unpack("!HH", packet[at:at + 4])
    if qclass != _IN:
        return None
    return ".".join(labels), qtype, at + 4


def answer(query: bytes, end: int, address: str | None, rcode: int = _NOERROR) -> bytes:
    """The response to `query` (question ending at `end`): one A record for `address`, or
    none, with `rcode`."""
    (qid, flags) = struct.unpack("!HH", query[:4])
    flags = 0x8000 | 0x0400 | (flags & 0x0100) | 0x0080 | rcode  # QR AA RD(copied) RA
    count = 1 if address else 0
    head = struct.pack("!HHHHHH", qid, flags, 1, count, 0, 0)
    body = query[12:end]
    if address:
        body += struct.pack("!HHHIH", 0xC00C, _A, _IN, 0, 4) + ipaddress.IPv4Address(
            address).packed
    return head + body


def upstreams(resolv_conf: str = "/etc/resolv.conf", *, exclude: str = "") -> list[str]:
    """The node's own IPv4 name servers, from resolv.conf."""
    servers = []
    with contextlib.suppress(OSError):
        for line in pathlib.Path(resolv_conf).read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver" and parts[1] != exclude:
                with contextlib.suppress(ValueError):
                    if ipaddress.ip_address(parts[1]).version == 4:
                        servers.append(parts[1])
    return servers


class NameServer(asyncio.DatagramProtocol):
    """Serves `lookup` on host:53 (UDP) until `close()`."""

    def __init__(self, *, lookup: Callable[[str, str], Awaitable[str | None]],
                 upstreams: list[str], upstream_port: int = 53) -> None:
        self._lookup = lookup
        self._upstreams = upstreams
        self._upstream_port = upstream_port
        self._transport: asyncio.DatagramTransport | None = None
        self._queries: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int = 53) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=(host, port))

    @property
    def port(self) -> int:
        assert self._transport is not None
        return int(self._transport.get_extra_info("sockname")[1])

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        transport = self._transport
        if transport is None:
            return
        question = parse_question(data)
        if question is None:
            return
        if len(self._queries) >= MAX_QUERIES:
            transport.sendto(answer(data, question[2], None, _REFUSED), addr)
            return
        task = asyncio.get_running_loop().create_task(self._answer(data, question, addr))
        self._queries.add(task)
        task.add_done_callback(self._queries.discard)

    async def _answer(self, query: bytes, question: tuple[str, int, int],
                      client: tuple[str, int]) -> None:
        name, qtype, end = question
        try:
            address = await self._lookup(client[0], name)
        except Exception:  # a fault here must cost this query only, with an answer and a log
            log.exception("name server: looking up %r for %s failed", name, client[0])
            if self._transport is not None:
                self._transport.sendto(answer(query, end, None, _SERVFAIL), client)
            return
        if address is not None:
            reply: bytes | None = answer(query, end, address if qtype == _A else None)
        else:
            reply = None
            for server in self._upstreams:
                with contextlib.suppress(OSError, TimeoutError):
                    reply = await _ask(server, self._upstream_port, query)
                    break
        transport = self._transport
        if transport is not None:
            transport.sendto(reply or answer(query, end, None, _SERVFAIL), client)

    async def close(self) -> None:
        """Stops serving; idempotent."""
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()
        tasks = list(self._queries)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _ask(server: str, port: int, query: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    got: asyncio.Future[bytes] = loop.create_future()

    class _Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            if not got.done() and data[:2] == query[:2]:
                got.set_result(data)

        def error_received(self, exc: Exception) -> None:
            if not got.done():
                got.set_exception(exc)

    transport, _ = await loop.create_datagram_endpoint(_Client, remote_addr=(server, port))
    try:
        transport.sendto(query)
        async with asyncio.timeout(FORWARD_TIMEOUT_S):
            return await got
    finally:
        transport.close()
