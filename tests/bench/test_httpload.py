"""bench/_httpload.py, the load generator of the update bench, against small servers on loopback:
a request on a kept-alive connection that the server closed is retried once and counted apart
(never lost, never silent), and errors and statuses outside 2xx are failures of their own kind."""

from __future__ import annotations

import asyncio
import json
import pathlib
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

LOADGEN = pathlib.Path(__file__).resolve().parents[2] / "bench" / "_httpload.py"


async def serve_closing_after_two(reader: asyncio.StreamReader,
                                  writer: asyncio.StreamWriter) -> None:
    """HTTP/1.1 with keep-alive, but the connection is closed, unannounced, after its second
    response, once the client may already have sent its third request: that request gets EOF."""
    try:
        for _ in range(2):
            head = await reader.readuntil(b"\r\n\r\n")
            if head.split(b" ")[1] == b"/missing":
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nv7 abc")
            await writer.drain()
        await asyncio.sleep(0.05)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


@pytest.fixture
async def server() -> AsyncIterator[str]:
    srv = await asyncio.start_server(serve_closing_after_two, "127.0.0.1", 0)
    async with srv:
        yield f"127.0.0.1:{srv.sockets[0].getsockname()[1]}"


async def generate(*args: str, phases: list[str], seconds: float) -> dict[str, Any]:
    """Runs the generator for `seconds` per phase (the first one: "start"); its JSON output."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(LOADGEN), "--rate", "200", "--timeout", "1", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert proc.stdin is not None
    for name in phases:
        await asyncio.sleep(seconds)  # deliberate: traffic in this phase
        proc.stdin.write(f"phase {name}\n".encode())
        await proc.stdin.drain()
    await asyncio.sleep(seconds)
    out, _ = await asyncio.wait_for(proc.communicate(b"stop\n"), timeout=20)
    assert proc.returncode == 0
    result: dict[str, Any] = json.loads(out)
    return result


async def test_a_request_on_a_keepalive_connection_the_server_closed_is_retried_and_counted(
        server: str) -> None:
    result = await generate("--mode", "keepalive", "--target", server, phases=["next"],
                            seconds=1.0)
    phases = {p["phase"]: p for p in result["phases"]}
    assert list(phases) == ["start", "next"]
    for p in phases.values():
        assert p["sent_count"] >= 10  # the rate is not under test: a loaded machine starts late
        assert p["failed_count"] == 0, p["failure_samples"]
        assert p["ok_count"] == p["sent_count"]
        assert p["reused_count"] > 0
        # Every third request finds its connection closed: seen idle (dropped before use) or
        # sent and answered by EOF (retried once on a new connection).
        assert p["retried_closed_keepalive_count"] + p["stale_dropped_count"] > 0
        assert p["retried_closed_keepalive_count"] <= p["reused_count"]
        assert p["answers"] == {"v7": p["ok_count"]}


async def test_errors_and_non_2xx_statuses_are_failures_of_their_kind(server: str) -> None:
    result = await generate("--mode", "new", "--target", server, "--path", "/missing",
                            "--target", "127.0.0.1:9", phases=[], seconds=1.0)
    (p,) = result["phases"]
    assert p["sent_count"] >= 10
    assert p["ok_count"] == 0
    assert p["failed_count"] == p["sent_count"]
    assert set(p["failure_kinds"]) == {"status 404", "refused"}
    assert p["failed_by_target"][server] == p["failure_kinds"]["status 404"]
    assert p["retried_closed_keepalive_count"] == 0


async def test_a_rate_line_changes_the_rate_and_replicas_are_tallied_by_the_word_asked_for(
) -> None:
    served = 0

    async def hello(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answers "hello from a" and "hello from b" in turn, closing each connection."""
        nonlocal served
        try:
            await reader.readuntil(b"\r\n\r\n")
            name = b"ab"[served % 2:served % 2 + 1]
            served += 1
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello from " + name)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    srv = await asyncio.start_server(hello, "127.0.0.1", 0)
    async with srv:
        target = f"127.0.0.1:{srv.sockets[0].getsockname()[1]}"
        began = time.time()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(LOADGEN), "--rate", "4", "--timeout", "1", "--mode", "new",
            "--target", target, "--answer-word", "2",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        assert proc.stdin is not None
        await asyncio.sleep(1.0)  # deliberate: traffic at the first rate
        proc.stdin.write(b"phase fast\nrate 100\n")
        await proc.stdin.drain()
        await asyncio.sleep(1.0)  # deliberate: traffic at the second rate
        out, _ = await asyncio.wait_for(proc.communicate(b"stop\n"), timeout=20)
        ended = time.time()
    assert proc.returncode == 0
    slow, fast = json.loads(out)["phases"]
    # An open loop never sends ahead of its schedule, and catches up when it starts late.
    assert slow["sent_count"] <= 6
    assert fast["sent_count"] >= 50
    for p in (slow, fast):
        assert p["failed_count"] == 0, p["failure_samples"]
        assert set(p["answers"]) <= {"a", "b"}
        assert sum(p["answers"].values()) == p["ok_count"]
        assert p["first_answers_unix_s"].keys() == p["answers"].keys()
        assert all(began <= t <= ended for t in p["first_answers_unix_s"].values())
    assert set(fast["answers"]) == {"a", "b"}
