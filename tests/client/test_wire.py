"""The client library's gRPC transport (podium.client._wire) against grpcio's own server, with
mutual TLS as a manager serves: messages larger than every flow-control window both ways, long
server streams, status codes with their details and trailing metadata, deadlines, cancels from
another thread, threads sharing one connection, a server that restarts between calls, and
servers that cannot be reached or trusted."""

from __future__ import annotations

import pathlib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any, NoReturn

import grpc
import pytest

from podium.client import _wire
from podium.client._wire import Channel, RpcError, StatusCode
from podium.manager.pki import ClusterCA
from podium.rules.credentials import MANAGER_NAME, Credentials
from tests.helpers import free_port

SERVICE = "podium.test.Wire"
LIMIT = 64 * 1024 * 1024
DETAILS = "ünïcode, 100% refused: see\r\nthe log"


def _echo(request: bytes, context: Any) -> bytes:
    return request


def _sized(request: bytes, context: Any) -> bytes:
    return bytes(i % 251 for i in range(int(request)))


def _fail(request: bytes, context: Any) -> NoReturn:
    context.set_trailing_metadata((("podium-leader", "10.0.0.1:7070"),))
    context.abort(next(c for c in grpc.StatusCode if c.value[0] == int(request)), DETAILS)
    raise AssertionError("abort() returned")


def _slow(request: bytes, context: Any) -> bytes:
    time.sleep(float(request))
    return b"late"


def _count(request: bytes, context: Any) -> Iterator[bytes]:
    for n in range(int(request)):
        yield f"{n:08d}".encode() * 12


def _forever(request: bytes, context: Any) -> Iterator[bytes]:
    yield b"first"
    while context.is_active():
        time.sleep(0.05)


HANDLERS = {
    "Echo": grpc.unary_unary_rpc_method_handler(_echo),
    "Sized": grpc.unary_unary_rpc_method_handler(_sized),
    "Fail": grpc.unary_unary_rpc_method_handler(_fail),
    "Slow": grpc.unary_unary_rpc_method_handler(_slow),
    "Count": grpc.unary_stream_rpc_method_handler(_count),
    "Forever": grpc.unary_stream_rpc_method_handler(_forever),
}


class Server:
    def __init__(self, ca: ClusterCA, port: int = 0) -> None:
        issued = ca.issue("manager", "manager", names=(MANAGER_NAME,), server=True)
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=24), options=[
            ("grpc.max_receive_message_length", LIMIT), ("grpc.max_send_message_length", LIMIT)])
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, HANDLERS),))
        self.port = self._server.add_secure_port(f"127.0.0.1:{port}", grpc.ssl_server_credentials(
            [(issued.key, issued.certificate)], root_certificates=ca.pem,
            require_client_auth=True))
        self._server.start()

    def stop(self) -> None:
        self._server.stop(grace=None).wait(5)


@pytest.fixture
def ca(tmp_path: pathlib.Path) -> ClusterCA:
    return ClusterCA.load_or_create(tmp_path / "pki")


@pytest.fixture
def server(ca: ClusterCA) -> Iterator[Server]:
    running = Server(ca)
    yield running
    running.stop()


def _channel(ca: ClusterCA, port: int) -> Channel:
    user = ca.issue("root", "admin")
    credentials = Credentials(f"127.0.0.1:{port}", "root", "admin", ca.pem, user.certificate,
                              user.key)
    return Channel(f"127.0.0.1:{port}", credentials.ssl_context(), server_name=MANAGER_NAME)


@pytest.fixture
def channel(ca: ClusterCA, server: Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[Channel]:
    # Receive windows of 100 kB: the tests' replies need dozens of WINDOW_UPDATEs.
    monkeypatch.setattr(_wire, "WINDOW", 100_000)
    made = _channel(ca, server.port)
    yield made
    made.close()


def _path(method: str) -> str:
    return f"/{SERVICE}/{method}"


def _failure(call: Callable[[], object]) -> RpcError:
    with pytest.raises(RpcError) as caught:
        call()
    return caught.value


def test_messages_larger_than_every_window_go_both_ways_whole(channel: Channel) -> None:
    # 5 MiB: over the server's initial windows (64 KiB) and grpcio's default message limit.
    payload = bytes(range(256)) * (5 * 4096)
    assert channel.unary(_path("Echo"), payload, timeout=30) == payload
    reply = channel.unary(_path("Sized"), b"3000000", timeout=30)
    assert len(reply) == 3_000_000 and reply[:5] == bytes(range(5)) and reply[251] == 0
    assert channel.unary(_path("Echo"), b"", timeout=5) == b""


def test_a_server_stream_delivers_every_message_in_order(channel: Channel) -> None:
    call = channel.stream(_path("Count"), b"20000", timeout=60)
    got = list(call)
    assert len(got) == 20_000  # 1.9 MB: past the connection's and the stream's first windows
    assert got[0] == b"00000000" * 12 and got[-1] == b"00019999" * 12
    assert all(int(m[:8]) == n for n, m in enumerate(got))


def test_a_refused_call_carries_its_code_details_and_trailing_metadata(channel: Channel) -> None:
    for code in (StatusCode.NOT_FOUND, StatusCode.UNAVAILABLE, StatusCode.PERMISSION_DENIED):
        request = str(code.value).encode()
        err = _failure(lambda: channel.unary(_path("Fail"), request, timeout=5))  # noqa: B023
        assert err.code == code
        assert err.details == DETAILS
        assert ("podium-leader", "10.0.0.1:7070") in err.trailers
    assert channel.unary(_path("Echo"), b"after", timeout=5) == b"after"


def test_a_call_past_its_deadline_ends_at_the_deadline(channel: Channel) -> None:
    started = time.monotonic()
    err = _failure(lambda: channel.unary(_path("Slow"), b"3", timeout=0.3))
    assert err.code == StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 2.0
    assert channel.unary(_path("Echo"), b"next", timeout=5) == b"next"


def test_a_stream_cancelled_from_another_thread_ends(
        channel: Channel, monkeypatch: pytest.MonkeyPatch) -> None:
    # A reading thread looks up every 5 s here: only a wake-up ends its wait sooner.
    monkeypatch.setattr(_wire, "READ_SLICE_S", 5.0)
    call = channel.stream(_path("Forever"), b"")
    messages = iter(call)
    assert next(messages) == b"first"
    timer = threading.Timer(0.2, call.cancel)
    timer.start()
    started = time.monotonic()
    err = _failure(lambda: next(messages))
    assert err.code == StatusCode.CANCELLED
    assert time.monotonic() - started < 2.5
    timer.join()
    assert channel.unary(_path("Echo"), b"still", timeout=5) == b"still"


def test_threads_share_one_connection(channel: Channel) -> None:
    errors: list[BaseException] = []
    stream_count: list[int] = []

    def calls(worker: int) -> None:
        try:
            for n in range(40):
                payload = f"{worker}:{n}:".encode() * (1 + n * 50)
                assert channel.unary(_path("Echo"), payload, timeout=30) == payload
        except BaseException as err:  # reported below
            errors.append(err)

    def stream() -> None:
        stream_count.append(sum(1 for _ in channel.stream(_path("Count"), b"5000", timeout=60)))

    threads = [threading.Thread(target=calls, args=(w,)) for w in range(12)]
    threads.append(threading.Thread(target=stream))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors[:3]
    assert stream_count == [5000]


def test_a_server_restarted_between_calls_is_reached_again(ca: ClusterCA) -> None:
    port = free_port()
    first = Server(ca, port)
    channel = _channel(ca, port)
    try:
        assert channel.unary(_path("Echo"), b"one", timeout=5) == b"one"
        first.stop()
        err = _failure(lambda: channel.unary(_path("Echo"), b"down", timeout=2))
        assert err.code == StatusCode.UNAVAILABLE
        second = Server(ca, port)
        try:
            assert channel.unary(_path("Echo"), b"two", timeout=5) == b"two"
        finally:
            second.stop()
    finally:
        channel.close()


def test_no_server_and_a_server_of_another_ca_are_unavailable(
        ca: ClusterCA, server: Server, tmp_path: pathlib.Path) -> None:
    closed = _channel(ca, free_port())
    started = time.monotonic()
    err = _failure(lambda: closed.unary(_path("Echo"), b"", timeout=5))
    assert err.code == StatusCode.UNAVAILABLE and "refused" in err.details
    assert time.monotonic() - started < 2.0
    stranger = _channel(ClusterCA.load_or_create(tmp_path / "other"), server.port)
    err = _failure(lambda: stranger.unary(_path("Echo"), b"", timeout=5))
    assert err.code == StatusCode.UNAVAILABLE and "TLS" in err.details, err.details


def test_a_reply_over_the_limit_is_refused_and_the_connection_goes_on(
        channel: Channel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_wire, "MAX_MESSAGE", 1_000_000)
    err = _failure(lambda: channel.unary(_path("Sized"), b"2000000", timeout=10))
    assert err.code == StatusCode.RESOURCE_EXHAUSTED and "2000000 bytes" in err.details
    assert channel.unary(_path("Sized"), b"900000", timeout=10)[:3] == bytes(range(3))
