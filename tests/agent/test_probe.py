"""HealthTracker without an event loop; Prober against local HTTP and TCP servers (no engine).

The async tests run on asyncio's default loop; check_http's cases run on uvloop's as well (the
agent's loop when installed).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from google.protobuf.duration_pb2 import Duration

from podium.agent.probe import HealthTracker, Prober, check_http, check_tcp
from podium.v1 import objects
from tests.helpers import eventually_async

STARTING = objects.HEALTH_STARTING
HEALTHY = objects.HEALTH_HEALTHY
UNHEALTHY = objects.HEALTH_UNHEALTHY


# ---- HealthTracker: pure --------------------------------------------------------------------

def test_failures_in_start_period_do_not_count() -> None:
    t = HealthTracker(retries=2, start_period=10.0, started_at=100.0)
    for now in (101.0, 105.0, 109.9):
        assert not t.record(False, now, "HTTP 503")
    assert (t.state, t.failures, t.last_error) == (STARTING, 0, "HTTP 503")
    assert not t.record(False, 110.0, "HTTP 503")  # the period is over: this one counts
    assert t.failures == 1
    assert t.record(False, 111.0, "HTTP 503")
    assert t.state == UNHEALTHY and not t.ready


def test_pass_in_start_period_marks_healthy_and_later_failures_count() -> None:
    t = HealthTracker(retries=1, start_period=10.0, started_at=0.0)
    assert t.record(True, 1.0)
    assert t.state == HEALTHY and t.ready
    # Forgiveness is for STARTING only: a healthy container failing early still counts.
    assert t.record(False, 2.0, "timeout after 1s")
    assert (t.state, t.failures, t.last_error) == (UNHEALTHY, 1, "timeout after 1s")


def test_retries_threshold_and_recovery() -> None:
    t = HealthTracker(retries=3, start_period=0.0, started_at=0.0)
    assert t.record(True, 1.0)
    assert not t.record(False, 2.0, "e")
    assert not t.record(False, 3.0, "e")
    assert t.state == HEALTHY and t.failures == 2
    assert t.record(False, 4.0, "e")
    assert t.state == UNHEALTHY
    assert not t.record(False, 5.0, "e")  # stays unhealthy, still counting
    assert t.failures == 4
    assert t.record(True, 6.0)
    assert (t.state, t.failures, t.last_error) == (HEALTHY, 0, "")
    assert not t.record(True, 7.0)


def test_a_pass_resets_the_streak() -> None:
    t = HealthTracker(retries=2, start_period=0.0, started_at=0.0)
    t.record(False, 1.0, "e")
    t.record(True, 2.0)
    t.record(False, 3.0, "e")
    assert t.state == HEALTHY and t.failures == 1


def test_retries_zero_means_one() -> None:
    t = HealthTracker(retries=0, start_period=0.0, started_at=0.0)
    assert t.record(False, 1.0, "e")
    assert t.state == UNHEALTHY


# ---- Prober: local servers ------------------------------------------------------------------

def dur(s: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(round(s * 1e9))
    return d


def http_probe(port: int, path: str = "/health", *, interval: float = 0.2, timeout: float = 1.0,
               retries: int = 3, status_min: int = 0, status_max: int = 0) -> objects.Probe:
    return objects.Probe(kind=objects.Probe.KIND_HTTP, port=port, path=path,
                         interval=dur(interval), timeout=dur(timeout), retries=retries,
                         status_min=status_min, status_max=status_max)


async def until(fn: Callable[[], bool], *, what: str) -> float:
    """Waits for `fn`; returns the monotonic time it was seen true."""
    await eventually_async(fn, timeout=5.0, what=what)
    return time.monotonic()


@dataclass
class Server:
    port: int
    status: int = 200
    delay: float = 0.0
    hits: int = 0


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server(port=0)

    async def handle(request: web.Request) -> web.Response:
        srv.hits += 1
        if srv.delay:
            await asyncio.sleep(srv.delay)
        headers = {"Location": "/elsewhere"} if 300 <= srv.status < 400 else None
        return web.Response(status=srv.status, text="x" * 100_000, headers=headers)

    app = web.Application()
    app.router.add_get("/health", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    srv.port = runner.addresses[0][1]
    try:
        yield srv
    finally:
        await runner.cleanup()


@dataclass
class Changes:
    seen: list[int] = field(default_factory=list)

    def __call__(self, tracker: HealthTracker) -> None:
        self.seen.append(tracker.state)


@contextlib.asynccontextmanager
async def running(prober: Prober) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(prober.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert task.cancelled(), "run() ended other than by cancellation"


async def test_http_healthy_then_unhealthy_within_interval_times_retries(server: Server) -> None:
    changes = Changes()
    prober = Prober(probe=http_probe(server.port), address="127.0.0.1",
                    started_at=time.monotonic(), on_change=changes)
    async with running(prober):
        t0 = time.monotonic()
        healthy_at = await until(lambda: prober.tracker.ready, what="healthy")
        server.status = 503
        switched = time.monotonic()
        unhealthy_at = await until(lambda: prober.tracker.state == UNHEALTHY, what="unhealthy")
        server.status = 200
        await until(lambda: prober.tracker.ready, what="healthy again")
    assert changes.seen == [HEALTHY, UNHEALTHY, HEALTHY]
    assert prober.tracker.last_error == ""
    assert healthy_at - t0 < 0.2 + 0.5
    assert unhealthy_at - switched < 0.2 * 3 + 1.0
    print(f"healthy after {healthy_at - t0:.3f}s, unhealthy {unhealthy_at - switched:.3f}s"
          " after the switch to 503")


@pytest.mark.parametrize(("status", "ok"), [(200, True), (302, True), (399, True),
                                            (404, False), (503, False)])
async def test_http_status_range(server: Server, status: int, ok: bool) -> None:
    server.status = status
    assert await check_http("127.0.0.1", server.port, "/health", 1.0) == (
        ok, "" if ok else f"HTTP {status}")
    # A custom range: only 404 passes.
    assert (await check_http("127.0.0.1", server.port, "/health", 1.0, 404, 404))[0] == (
        status == 404)


async def test_http_probe_status_range_from_spec(server: Server) -> None:
    server.status = 404
    changes = Changes()
    probe = http_probe(server.port, interval=0.05, retries=1, status_min=200, status_max=404)
    prober = Prober(probe=probe, address="127.0.0.1", started_at=time.monotonic(),
                    on_change=changes)
    async with running(prober):
        await until(lambda: prober.tracker.ready, what="404 accepted")
    assert changes.seen == [HEALTHY]


async def test_http_timeout_is_a_failure(server: Server) -> None:
    server.delay = 1.0
    changes = Changes()
    prober = Prober(probe=http_probe(server.port, interval=0.05, timeout=0.1, retries=1),
                    address="127.0.0.1", started_at=time.monotonic(), on_change=changes)
    async with running(prober):
        t0 = time.monotonic()
        at = await until(lambda: prober.tracker.state == UNHEALTHY, what="unhealthy")
    assert changes.seen == [UNHEALTHY]
    assert prober.tracker.last_error == "timeout after 0.1s"
    assert at - t0 < 0.05 + 0.1 + 0.5


async def test_http_connection_refused() -> None:
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    result = await check_http("127.0.0.1", port, "/health", 1.0)
    assert result == (False, "connect: Connection refused")


@dataclass
class RawServer:
    """Answers every connection with `reply` (after `delay` s), recording what it was sent."""

    reply: bytes = b""
    delay: float = 0.0
    requests: list[bytes] = field(default_factory=list)
    handlers: set[asyncio.Task[None]] = field(default_factory=set)


@pytest.fixture
async def raw() -> AsyncIterator[tuple[RawServer, int]]:
    srv = RawServer()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        srv.handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            srv.requests.append(await reader.readuntil(b"\r\n\r\n"))
            await asyncio.sleep(srv.delay)
            writer.write(srv.reply)
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass  # the probe hung up first
        finally:
            writer.close()

    listener = await asyncio.start_server(answer, "127.0.0.1", 0)
    async with listener:
        yield srv, listener.sockets[0].getsockname()[1]
        # Let handlers finish (a cancelled one makes asyncio 3.11's streams log an error).
        await asyncio.gather(*srv.handlers)


async def test_http_sends_a_minimal_request(raw: tuple[RawServer, int]) -> None:
    srv, port = raw
    srv.reply = b"HTTP/1.1 204 No Content\r\n\r\n"
    assert await check_http("127.0.0.1", port, "/health?deep=1", 1.0) == (True, "")
    assert srv.requests == [
        f"GET /health?deep=1 HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n"
        "User-Agent: podium-probe\r\nConnection: close\r\n\r\n".encode()]


async def test_http_reads_only_the_status_line(raw: tuple[RawServer, int]) -> None:
    srv, port = raw
    # A status line arriving without its reason phrase's CRLF before close still counts; a big
    # body is not read.
    srv.reply = b"HTTP/1.0 503 Service Unavailable\r\n" + b"x" * 1_000_000
    assert await check_http("127.0.0.1", port, "/", 1.0) == (False, "HTTP 503")
    srv.reply = b"HTTP/1.0 200"
    assert await check_http("127.0.0.1", port, "/", 1.0) == (True, "")


@pytest.mark.parametrize(("reply", "text"), [
    (b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3 and then some more\r\n",
     "bad response: 'SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3 a'"),
    (b"HTTP/1.1 2000 OK\r\n", "bad response: 'HTTP/1.1 2000 OK\\r\\n'"),
    (b"HTTP/2 200\r\n", "bad response: 'HTTP/2 200\\r\\n'"),
    (b"", "bad response: ''"),  # closed without a word
    (b"x" * 100_000, "bad response: '" + "x" * 40 + "'"),  # no line end within the cap
])
async def test_http_malformed_response(raw: tuple[RawServer, int], reply: bytes,
                                       text: str) -> None:
    srv, port = raw
    srv.reply = reply
    assert await check_http("127.0.0.1", port, "/", 1.0) == (False, text)


async def test_http_timeout_covers_the_response(raw: tuple[RawServer, int]) -> None:
    srv, port = raw
    srv.reply, srv.delay = b"HTTP/1.0 200 OK\r\n\r\n", 0.5
    t0 = time.monotonic()
    assert await check_http("127.0.0.1", port, "/", 0.1) == (False, "timeout after 0.1s")
    assert time.monotonic() - t0 < 0.5


async def test_http_ipv6_host_header() -> None:
    requests: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.0 200 OK\r\n\r\n")
        writer.close()

    try:
        listener = await asyncio.start_server(answer, "::1", 0)
    except OSError as err:
        pytest.skip(f"no IPv6 loopback: {err}")
    async with listener:
        port = listener.sockets[0].getsockname()[1]
        assert await check_http("::1", port, "/", 1.0) == (True, "")
    assert f"Host: [::1]:{port}\r\n".encode() in requests[0]


async def test_prober_encodes_the_path(raw: tuple[RawServer, int]) -> None:
    srv, port = raw
    srv.reply = b"HTTP/1.0 200 OK\r\n\r\n"
    prober = Prober(probe=http_probe(port, "health check/é?a=1&b=%20#frag"),
                    address="127.0.0.1", started_at=time.monotonic(), on_change=Changes())
    assert await prober.check() == (True, "")
    assert srv.requests[0].startswith(b"GET /health%20check/%C3%A9?a=1&b=%20 HTTP/1.0\r\n")


async def test_tcp_probe_follows_the_listener() -> None:
    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    listener = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    changes = Changes()
    probe = objects.Probe(kind=objects.Probe.KIND_TCP, port=port, interval=dur(0.1),
                          timeout=dur(0.5), retries=2)
    prober = Prober(probe=probe, address="127.0.0.1", started_at=time.monotonic(),
                    on_change=changes)
    async with running(prober):
        await until(lambda: prober.tracker.ready, what="healthy")
        listener.close()
        await listener.wait_closed()
        closed = time.monotonic()
        at = await until(lambda: prober.tracker.state == UNHEALTHY, what="unhealthy")
    assert changes.seen == [HEALTHY, UNHEALTHY]
    assert prober.tracker.last_error == "connect: Connection refused"
    assert at - closed < 0.1 * 2 + 1.0
    assert await check_tcp("127.0.0.1", port, 0.5) == (False, "connect: Connection refused")


async def test_start_interval_and_start_period() -> None:
    # Nothing listens: failures during the start period are forgiven, at start_interval pace.
    probe = objects.Probe(kind=objects.Probe.KIND_TCP, port=1, interval=dur(10), timeout=dur(0.5),
                          retries=1, start_period=dur(0.5), start_interval=dur(0.05))
    prober = Prober(probe=probe, address="127.0.0.1", started_at=time.monotonic(),
                    on_change=Changes())
    assert prober.delay() == 0.05
    async with running(prober):
        await until(lambda: prober.tracker.last_error != "", what="a forgiven failure")
        assert prober.tracker.state == STARTING
    prober.tracker.started_at -= 1.0  # the start period is over
    assert prober.delay() == 10.0


def test_wake_ups_align_on_the_grid() -> None:
    from podium.agent.probe import aligned

    for now in (0.0, 0.03, 1.234, 99.99):
        delay = aligned(1.0, now)
        assert 1.0 <= delay < 1.1 + 1e-9
        assert abs(((now + delay) / 0.1) - round((now + delay) / 0.1)) < 1e-6
    assert aligned(0.0, 5.5) == 0.0


def test_check_http_on_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")
    replies = {b"/ok": b"HTTP/1.1 200 OK\r\n" + b"x" * 1_000_000,
               b"/down": b"HTTP/1.1 503 Service Unavailable\r\n\r\n",
               b"/junk": b"hello\r\n", b"/slow": b"HTTP/1.1 200 OK\r\n\r\n"}
    handlers: set[asyncio.Task[None]] = set()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            target = (await reader.readuntil(b"\r\n")).split()[1]
            if target == b"/slow":
                await asyncio.sleep(0.3)
            writer.write(replies[target])
            await writer.drain()
        except OSError:
            pass  # the probe hung up first
        finally:
            writer.close()

    async def main() -> None:
        listener = await asyncio.start_server(answer, "127.0.0.1", 0)
        async with listener:
            port = listener.sockets[0].getsockname()[1]
            assert await check_http("127.0.0.1", port, "/ok", 1.0) == (True, "")
            assert await check_http("127.0.0.1", port, "/down", 1.0) == (False, "HTTP 503")
            assert await check_http("127.0.0.1", port, "/junk", 1.0) == (
                False, "bad response: 'hello\\r\\n'")
            assert await check_http("127.0.0.1", port, "/slow", 0.1) == (
                False, "timeout after 0.1s")
            await asyncio.gather(*handlers)  # the slow one included
        assert await check_http("127.0.0.1", port, "/ok", 1.0) == (
            False, "connect: Connection refused")

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
