"""Hostile input to a real manager process: malformed and oversized request messages, and
connections that never finish their handshake. The manager answers each with a clear status,
logs at most a rate-limited line (never a traceback), keeps its state and goes on serving."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import random
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator

import grpc
import pytest

from podium.manager.requestguard import CONTROL_MAX_BYTES, MAX_RECEIVE_BYTES
from podium.v1 import control, control_grpc, dispatcher, objects
from tests.helpers import eventually, free_port

HANDSHAKE_TIMEOUT_S = 1.0


@dataclasses.dataclass
class RunningManager:
    address: str
    log: pathlib.Path
    pid: int

    def log_lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))


@pytest.fixture(scope="module")
def manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningManager]:
    address = f"127.0.0.1:{free_port()}"
    data = tmp_path_factory.mktemp("manager")
    log = data / "manager.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "podium.manager", "--listen", address, "--data-dir", str(data),
             "--handshake-timeout", str(HANDSHAKE_TIMEOUT_S)],
            stdout=out, stderr=subprocess.STDOUT)
    try:
        with grpc.insecure_channel(address) as channel:
            grpc.channel_ready_future(channel).result(timeout=20)
        yield RunningManager(address, log, proc.pid)
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0


def _garbage(rnd: random.Random) -> bytes:
    """Bytes that are no protobuf message: a first tag with field number 0 or wire type 6 or 7
    is invalid in every message type (random bytes alone sometimes parse as unknown fields)."""
    first = rnd.choice([0x00, 0x06, 0x07, 0x0E, 0x0F, 0xFF])
    return bytes([first]) + rnd.randbytes(rnd.randint(0, 300))


def _call_raw(channel: grpc.Channel, method: str, body: bytes) -> grpc.RpcError | None:
    path = f"/podium.v1.Control/{method}"
    try:
        if method == "WatchEvents":
            call = channel.unary_stream(path, request_serializer=None, response_deserializer=None)
            for _ in call(body, timeout=10):
                pass
        else:
            channel.unary_unary(path, request_serializer=None, response_deserializer=None)(
                body, timeout=10)
    except grpc.RpcError as err:
        return err
    return None


def _about_refusals(lines: list[str]) -> list[str]:
    return [line for line in lines if "refused a request" in line]


def test_garbage_requests_get_invalid_argument_and_one_log_line(manager: RunningManager) -> None:
    methods = [m.name for m in control.DESCRIPTOR.services_by_name["Control"].methods]
    rnd = random.Random(13)
    before = len(manager.log_lines())
    codes: Counter[str] = Counter()
    details: set[str] = set()
    with grpc.insecure_channel(manager.address) as channel:
        for i in range(2400):
            err = _call_raw(channel, methods[i % len(methods)], _garbage(rnd))
            codes[err.code().name if err else "OK"] += 1
            if err is not None:
                details.add(err.details() or "")
        assert codes == {"INVALID_ARGUMENT": 2400}
        assert "request is not a valid podium.v1.CreateServiceRequest" in details
        assert "request is not a valid podium.v1.GetRequest" in details
        # Still serving, and nothing was written.
        stub = control_grpc.ControlStub(channel)
        assert list(stub.ListServices(control.ListServicesRequest(), timeout=10).services) == []
    new = manager.log_lines()[before:]
    assert not any("Traceback" in line for line in new), "\n".join(new)
    refusals = _about_refusals(new)
    # One line per 10 s: a run this short logs one or two.
    assert 1 <= len(refusals) <= 3, "\n".join(new)
    assert len(new) <= 5, "\n".join(new)


def _register(node_id: str) -> bytes:
    description = objects.NodeDescription(name=f"n-{node_id[:6]}")
    return dispatcher.AgentMessage(
        register=dispatcher.Register(node_id=node_id, description=description)).SerializeToString()


def _session(channel: grpc.Channel, messages: list[bytes]) -> tuple[int, grpc.RpcError | None]:
    call = channel.stream_stream("/podium.v1.Dispatcher/Session", request_serializer=None,
                                 response_deserializer=None)
    received = 0
    try:
        for _ in call(iter(messages), timeout=10):
            received += 1
    except grpc.RpcError as err:
        return received, err
    return received, None


def test_malformed_agent_message_ends_only_that_session(manager: RunningManager) -> None:
    rnd = random.Random(7)
    before = len(manager.log_lines())
    with grpc.insecure_channel(manager.address) as channel:
        received, err = _session(channel, [_garbage(rnd)])
        assert err is not None and err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.details() == "request is not a valid podium.v1.AgentMessage"
        assert received == 0
        # Mid-session: registered, then garbage. The session ends; the node stays known.
        node_id = "a" * 32
        received, err = _session(channel, [_register(node_id), _garbage(rnd)])
        assert err is not None and err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
        stub = control_grpc.ControlStub(channel)
        nodes = stub.ListNodes(control.ListNodesRequest(), timeout=10).nodes
        assert [n.id for n in nodes] == [node_id]
    new = manager.log_lines()[before:]
    assert not any("Traceback" in line for line in new), "\n".join(new)


def test_oversized_requests_get_resource_exhausted(manager: RunningManager) -> None:
    with grpc.insecure_channel(manager.address) as channel:
        # Above Control's own limit, below what gRPC accepts on the port.
        name = "x" * (CONTROL_MAX_BYTES + 1024)
        err = _call_raw(channel, "GetService",
                        control.GetRequest(ref=name).SerializeToString())
        assert err is not None and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err
        assert f"limit of {CONTROL_MAX_BYTES} bytes" in (err.details() or "")
        # Above anything the server accepts: gRPC refuses it before Python sees it.
        err = _call_raw(channel, "GetService", b"\x0a" + b"x" * (MAX_RECEIVE_BYTES + 16))
        assert err is not None and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err
        # A request within the limit is served.
        err = _call_raw(channel, "GetService", control.GetRequest(ref="web").SerializeToString())
        assert err is not None and err.code() == grpc.StatusCode.NOT_FOUND, err


def test_a_status_report_of_5000_tasks_is_accepted(manager: RunningManager) -> None:
    """gRPC's default limit (4 MiB) would end the session of a node with many tasks: its
    report of every task, each with its recent events, is ~6.7 MiB for 5,000 tasks."""
    report = dispatcher.StatusReport()
    for i in range(5000):
        update = report.updates.add(task_id=f"{i:032x}")
        update.status.state = objects.TASK_STATE_RUNNING
        update.status.container_id = "c" * 64
        for _ in range(20):
            update.status.history.add(kind="health", message="check passed: GET / status 200")
    body = dispatcher.AgentMessage(status=report).SerializeToString()
    assert len(body) > 4 << 20
    with grpc.insecure_channel(manager.address) as channel:
        received, err = _session(channel, [_register("b" * 32), body])
    assert err is None, err  # the agent half-closed: the session ends normally
    assert received >= 1  # SessionInfo at least


def test_idle_connections_are_closed_and_do_not_stop_clients(manager: RunningManager) -> None:
    host, port = manager.address.rsplit(":", 1)
    fds_before = manager.open_fds()
    idle: list[socket.socket] = []
    try:
        for i in range(500):
            sock = socket.create_connection((host, int(port)), timeout=5)
            if i % 3 == 1:  # half the HTTP/2 client preface
                sock.sendall(b"PRI * HTTP/2.0\r\n")
            elif i % 3 == 2:  # the whole preface, then no SETTINGS frame
                sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            idle.append(sock)
        started = time.monotonic()
        with grpc.insecure_channel(manager.address) as channel:
            stub = control_grpc.ControlStub(channel)
            stub.ListNodes(control.ListNodesRequest(), timeout=5)
        assert time.monotonic() - started < 2.0

        for sock in idle:
            sock.setblocking(False)
        closed: set[int] = set()

        def all_closed() -> bool:
            for i, sock in enumerate(idle):
                if i in closed:
                    continue
                try:
                    # Frames the server sent (its SETTINGS) come before the close (b"").
                    while sock.recv(65536):
                        pass
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    pass
                closed.add(i)
            return len(closed) == len(idle)

        eventually(all_closed, timeout=HANDSHAKE_TIMEOUT_S + 10, what="idle connections closed")
        eventually(lambda: manager.open_fds() <= fds_before + 5, timeout=10,
                   what="manager's sockets released")
    finally:
        for sock in idle:
            sock.close()
