"""HealthTracker without an event loop; Prober against local HTTP and TCP servers (no engine)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from google.protobuf.duration_pb2 import Duration

from podium.agent.probe import HealthTracker, Prober, check_http, check_tcp, session_for_probes
from podium.v1 import objects

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


async def until(fn: Callable[[], bool], *, within: float = 5.0, what: str = "condition") -> float:
    """Polls `fn` until true; returns the monotonic time it became true."""
    deadline = time.monotonic() + within
    while not fn():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {within:g} s")
        await asyncio.sleep(0.01)
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
    url = f"http://127.0.0.1:{server.port}/health"
    async with session_for_probes() as session:
        assert await check_http(session, url, 1.0) == (ok, "" if ok else f"HTTP {status}")
        # A custom range: only 404 passes.
        assert (await check_http(session, url, 1.0, 404, 404))[0] == (status == 404)


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
    async with aiohttp.ClientSession() as shared:
        prober = Prober(probe=http_probe(server.port, interval=0.05, timeout=0.1, retries=1),
                        address="127.0.0.1", started_at=time.monotonic(), on_change=changes,
                        session=shared)
        async with running(prober):
            t0 = time.monotonic()
            at = await until(lambda: prober.tracker.state == UNHEALTHY, what="unhealthy")
        assert not shared.closed  # a session passed in is the caller's to close
    assert changes.seen == [UNHEALTHY]
    assert prober.tracker.last_error == "timeout after 0.1s"
    assert at - t0 < 0.05 + 0.1 + 0.5


async def test_http_connection_refused() -> None:
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    async with session_for_probes() as session:
        result = await check_http(session, f"http://127.0.0.1:{port}/health", 1.0)
    assert result == (False, "connect: Connection refused")


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
