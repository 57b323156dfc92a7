"""podium.agent.dns: the containers' name server, on 127.0.0.1 (a free port), with a fake
upstream on 127.0.0.1 for the names it does not know."""

from __future__ import annotations

import asyncio
import ipaddress
import struct
from collections.abc import AsyncIterator

import pytest

from podium.agent import dns
from podium.agent.dns import NameServer, answer, parse_question

HOST = "127.0.0.1"
A, AAAA, IN = 1, 28, 1


def query(name: str, qtype: int = A, qid: int = 0x1234, *, flags: int = 0x0100) -> bytes:
    """A standard query with one question, as a stub resolver sends it (RD set)."""
    head = struct.pack("!HHHHHH", qid, flags, 1, 0, 0, 0)
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".") if p)
    return head + labels + b"\0" + struct.pack("!HH", qtype, IN)


def decode(reply: bytes) -> tuple[int, int, list[tuple[int, int, str]]]:
    """(id, rcode, [(type, ttl, address)]) of a reply to a `query`."""
    qid, flags, qd, an, _, _ = struct.unpack("!HHHHHH", reply[:12])
    assert flags & 0x8000, "not a response"
    assert qd == 1
    question = parse_question(reply[:2] + b"\0\0" + reply[4:])  # read it as a query
    assert question is not None
    at = question[2]
    records = []
    for _ in range(an):
        _, rtype, _, ttl, length = struct.unpack("!HHHIH", reply[at:at + 12])
        data = reply[at + 12:at + 12 + length]
        records.append((rtype, ttl, str(ipaddress.IPv4Address(data))))
        at += 12 + length
    return qid, flags & 0xF, records


def test_a_question_is_read_back_lower_case_without_the_final_dot() -> None:
    packet = query("Shop_Web.", AAAA)
    assert parse_question(packet) == ("shop_web", AAAA, len(packet))
    assert parse_question(query("a.b.c")) == ("a.b.c", A, len(query("a.b.c")))


@pytest.mark.parametrize("packet", [
    b"",
    query("web")[:11],  # shorter than a header
    query("web", flags=0x8100),  # a response
    query("web", flags=0x2800),  # opcode 5 (UPDATE), not QUERY
    query("web")[:-2],  # cut in the class
    query("web")[:14],  # cut in a label
    query("web")[:4] + b"\0\2" + query("web")[6:],  # two questions
    query("web")[:-2] + b"\0\3",  # class CH
])
def test_anything_but_one_standard_question_is_not_read(packet: bytes) -> None:
    assert parse_question(packet) is None


def test_an_answer_carries_the_address_with_ttl_zero_and_the_query_id() -> None:
    packet = query("web", qid=0xBEEF)
    question = parse_question(packet)
    assert question is not None
    reply = answer(packet, question[2], "10.96.0.7")
    assert decode(reply) == (0xBEEF, 0, [(A, 0, "10.96.0.7")])
    flags = struct.unpack("!H", reply[2:4])[0]
    assert flags & 0x0100  # recursion desired copied
    assert decode(answer(packet, question[2], None, 2)) == (0xBEEF, 2, [])


class Upstream(asyncio.DatagramProtocol):
    """A fake upstream name server: answers every query with 192.0.2.1."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.asked: list[str] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        question = parse_question(data)
        assert question is not None and self.transport is not None
        self.asked.append(question[0])
        self.transport.sendto(answer(data, question[2], "192.0.2.1"), addr)


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[Upstream, int]]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(Upstream, local_addr=(HOST, 0))
    try:
        yield protocol, transport.get_extra_info("sockname")[1]
    finally:
        transport.close()


class Asker(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.replies.put_nowait(data)


async def ask(port: int, packet: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    transport, asker = await loop.create_datagram_endpoint(Asker, remote_addr=(HOST, port))
    try:
        transport.sendto(packet)
        async with asyncio.timeout(5):
            return await asker.replies.get()
    finally:
        transport.close()


KNOWN = {("127.0.0.1", "shop_web"): "10.96.0.7"}


async def lookup(peer: str, name: str) -> str | None:
    return KNOWN.get((peer, name))


async def serving(upstreams: list[str], upstream_port: int = 53) -> NameServer:
    server = NameServer(lookup=lookup, upstreams=upstreams, upstream_port=upstream_port)
    await server.start(HOST, 0)
    return server


async def test_a_known_name_is_answered_with_its_virtual_ip(
    upstream: tuple[Upstream, int],
) -> None:
    fake, port = upstream
    server = await serving([HOST], port)
    try:
        assert decode(await ask(server.port, query("Shop_Web", qid=7))) == (
            7, 0, [(A, 0, "10.96.0.7")])
        # Any other record type of a known name: no record, no error (not NXDOMAIN, which
        # would make resolvers give up on the A record too).
        assert decode(await ask(server.port, query("shop_web", AAAA, qid=8))) == (8, 0, [])
        assert fake.asked == []
    finally:
        await server.close()


async def test_an_unknown_name_is_forwarded_and_the_upstream_answer_passed_back(
    upstream: tuple[Upstream, int],
) -> None:
    fake, port = upstream
    server = await serving(["127.0.0.1"], port)
    try:
        assert decode(await ask(server.port, query("example.org", qid=9))) == (
            9, 0, [(A, 0, "192.0.2.1")])
        assert fake.asked == ["example.org"]
    finally:
        await server.close()


async def test_an_unknown_name_gets_servfail_when_no_upstream_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = await serving([])
    try:
        assert decode(await ask(server.port, query("example.org", qid=10))) == (10, 2, [])
    finally:
        await server.close()
    # An upstream that never answers: SERVFAIL once FORWARD_TIMEOUT_S has passed.
    loop = asyncio.get_running_loop()
    silent, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                    local_addr=(HOST, 0))
    monkeypatch.setattr(dns, "FORWARD_TIMEOUT_S", 0.05)
    server = await serving([HOST], silent.get_extra_info("sockname")[1])
    try:
        assert decode(await ask(server.port, query("example.org", qid=11))) == (11, 2, [])
    finally:
        await server.close()
        silent.close()


async def test_close_is_idempotent() -> None:
    server = await serving([])
    await server.close()
    await server.close()


async def test_a_lookup_that_fails_answers_servfail_and_the_server_carries_on() -> None:
    calls = 0

    async def failing_once(peer: str, name: str) -> str | None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        return await lookup(peer, name)

    server = NameServer(lookup=failing_once, upstreams=[])
    await server.start(HOST, 0)
    try:
        assert decode(await ask(server.port, query("shop_web", qid=12))) == (12, 2, [])
        answered = decode(await ask(server.port, query("shop_web", qid=13)))
        assert answered == (13, 0, [(1, 0, "10.96.0.7")])
    finally:
        await server.close()
