"""podium.agent.relay: the preamble, and a Relay on 127.0.0.1 in front of an echo server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from podium.agent.relay import Relay, parse_preamble, preamble
from tests.agent._proxykit import HOST, Backend, serving_relay


def test_the_preamble_reads_back() -> None:
    line = preamble("t0123abcd", 8080)
    assert line == b"PODIUM-RELAY t0123abcd 8080\n"
    assert parse_preamble(line) == ("t0123abcd", 8080)


@pytest.mark.parametrize("line", [
    b"\n",
    b"PODIUM-RELAY t1\n",  # no port
    b"PODIUM-RELAY t1 80 extra\n",
    b"PODIUM-RELAY t1 eighty\n",
    b"PODIUM-RELAY t1 -80\n",
    b"GET / HTTP/1.1\n",
    b"PODIUM-RELAY t\xff 80\n",
])
def test_a_bad_preamble_is_not_read(line: bytes) -> None:
    assert parse_preamble(line) is None


@contextlib.asynccontextmanager
async def relay_to(backend: Backend, task_id: str = "t1") -> AsyncIterator[Relay]:
    """A relay that knows one replica: `task_id` on the backend's port, at 127.0.0.1."""
    async with serving_relay({(task_id, backend.port): HOST}) as relay:
        yield relay


async def _send(port: int, data: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(data)
    return reader, writer


async def test_a_known_replica_is_reached_and_bytes_go_both_ways() -> None:
    async with Backend("a", "echo") as backend, relay_to(backend) as relay:
        reader, writer = await _send(relay.port, preamble("t1", backend.port) + b"ping")
        try:
            async with asyncio.timeout(5):
                assert await reader.readexactly(5) == b"+ping"
                writer.write(b"pong" * 10_000)
                assert await reader.readexactly(40_000) == b"pong" * 10_000
                writer.write_eof()  # passed on: the backend says bye and closes
                assert await reader.read() == b"bye"
        finally:
            writer.close()


@pytest.mark.parametrize("line", [
    preamble("t2", 1),  # a task the relay does not know
    b"hello there\n",  # not a preamble
    b"PODIUM-RELAY " + b"t" * 200 + b" 80\n",  # too long
])
async def test_an_unknown_replica_or_a_bad_preamble_is_refused_and_closed(line: bytes) -> None:
    async with Backend("a", "echo") as backend, relay_to(backend) as relay:
        reader, writer = await _send(relay.port, line)
        try:
            async with asyncio.timeout(5):
                assert await reader.read() == b"-"
        finally:
            writer.close()


async def test_a_known_task_on_a_port_it_does_not_serve_is_refused() -> None:
    async with Backend("a", "echo") as backend, relay_to(backend) as relay:
        reader, writer = await _send(relay.port, preamble("t1", backend.port + 1))
        try:
            async with asyncio.timeout(5):
                assert await reader.read() == b"-"
        finally:
            writer.close()


async def test_a_replica_that_refuses_the_connection_is_answered_minus() -> None:
    async with Backend("a", "echo") as backend:
        port = backend.port
    known = {("t1", port): HOST}  # the backend is gone: its port refuses
    relay = Relay(lookup=lambda task, p: known.get((task, p)), host=HOST, port=0,
                  connect_timeout=0.5)
    await relay.start()
    try:
        reader, writer = await _send(relay.port, preamble("t1", port))
        async with asyncio.timeout(5):
            assert await reader.read() == b"-"
        writer.close()
    finally:
        await relay.close()


async def test_close_ends_relayed_connections_and_is_idempotent() -> None:
    async with Backend("a", "echo") as backend:
        async with relay_to(backend) as relay:
            reader, writer = await _send(relay.port, preamble("t1", backend.port))
            async with asyncio.timeout(5):
                assert await reader.readexactly(1) == b"+"
            await relay.close()
            async with asyncio.timeout(5):
                assert await reader.read() == b""
            writer.close()
