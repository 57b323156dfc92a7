"""Hostile input to a real, secured manager process: malformed and oversized request messages,
connections that never finish their handshake (TLS or HTTP/2), and a flood of failed joins. The
manager answers each with a clear status, logs at most a rate-limited line (never a
traceback), keeps its state and goes on serving.

Every call here is made as a caller the manager admits (the local admin; nodes with the
certificates they joined for), so that what is tested is the input, not the admission."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import socket
import ssl
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import symbol_database
from google.protobuf.message import DecodeError

from podium.lab.local import Cluster, secure_channel
from podium.manager.requestguard import CONTROL_MAX_BYTES, MAX_RECEIVE_BYTES
from podium.manager.security import JOIN_FAILURES
from podium.rules.certs import JoinToken, certificate_request, new_key, new_secret
from podium.rules.credentials import CHANNEL_OPTIONS, MANAGER_NAME, Credentials
from podium.v1 import control, control_grpc, dispatcher, dispatcher_grpc, objects
from tests.helpers import eventually

# Real manager processes: the security lane (README, Tests), not the fast lane.
pytestmark = pytest.mark.security

HANDSHAKE_TIMEOUT_S = 1.0
NODE_A, NODE_B = "a" * 32, "b" * 32  # the node ids the sessions below register


@dataclasses.dataclass
class RunningManager:
    cluster: Cluster
    pid: int
    # Node certificates got by joining, before any test floods the join port from this address.
    nodes: dict[str, Any]

    @property
    def address(self) -> str:
        return self.cluster.address

    @property
    def join_address(self) -> str:
        return f"127.0.0.1:{self.cluster.join_port}"

    def admin_channel(self) -> grpc.Channel:
        return secure_channel(self.address, self.cluster.credentials, aio=False)

    def node_channel(self, node_id: str) -> grpc.Channel:
        return grpc.secure_channel(self.address, self.nodes[node_id], options=CHANNEL_OPTIONS)

    def log_lines(self) -> list[str]:
        return (self.cluster.root / "manager.log").read_text(errors="replace").splitlines()

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))


@pytest.fixture(scope="module")
def manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningManager]:
    root = tmp_path_factory.mktemp("hostile")
    cluster = Cluster(root, manager_args=("--handshake-timeout", str(HANDSHAKE_TIMEOUT_S)))
    cluster.start_manager()
    proc: subprocess.Popen[bytes] = cluster.procs.pop("manager")
    try:
        nodes = {node_id: asyncio.run(cluster.node_credentials(
            node_id, f"127.0.0.1:{cluster.join_port}", root / node_id))
            for node_id in (NODE_A, NODE_B)}
        yield RunningManager(cluster, proc.pid, nodes)
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0


def _request_type(method: str) -> Any:
    descriptor = control.DESCRIPTOR.services_by_name["Control"].methods_by_name[method]
    return symbol_database.Default().GetSymbol(descriptor.input_type.full_name)


def _garbage(rnd: random.Random, request_type: Any) -> bytes:
    """Bytes that are no valid `request_type`: a first tag with field number 0 or wire type 6 or
    7 is invalid in nearly every message type (random bytes alone often parse as unknown
    fields); what the protobuf library still parses (a message type without fields takes some)
    is drawn again."""
    while True:
        first = rnd.choice([0x00, 0x06, 0x07, 0x0E, 0x0F])
        body = bytes([first]) + rnd.randbytes(rnd.randint(0, 300))
        try:
            request_type.FromString(body)
        except DecodeError:
            return body


def _call_raw(channel: grpc.Channel, method: str, body: bytes) -> grpc.RpcError | None:
    path = f"/podium.v1.Control/{method}"
    try:
        if control.DESCRIPTOR.services_by_name["Control"].methods_by_name[method].server_streaming:
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
    with manager.admin_channel() as channel:
        for i in range(2400):
            method = methods[i % len(methods)]
            err = _call_raw(channel, method, _garbage(rnd, _request_type(method)))
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
    print(f"2400 garbage Control requests over mutual TLS: {dict(codes)}; "
          f"{len(refusals)} log lines about them, no traceback")


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
    with manager.node_channel(NODE_A) as channel:
        received, err = _session(channel, [_garbage(rnd, dispatcher.AgentMessage)])
        assert err is not None and err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.details() == "request is not a valid podium.v1.AgentMessage"
        assert received == 0
        # Mid-session: registered, then garbage. The session ends; the node stays known.
        received, err = _session(channel, [_register(NODE_A),
                                           _garbage(rnd, dispatcher.AgentMessage)])
        assert err is not None and err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
    with manager.admin_channel() as channel:
        stub = control_grpc.ControlStub(channel)
        nodes = stub.ListNodes(control.ListNodesRequest(), timeout=10).nodes
        assert [n.id for n in nodes] == [NODE_A]
    new = manager.log_lines()[before:]
    assert not any("Traceback" in line for line in new), "\n".join(new)


def test_oversized_requests_get_resource_exhausted(manager: RunningManager) -> None:
    with manager.admin_channel() as channel:
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
    with manager.node_channel(NODE_B) as channel:
        received, err = _session(channel, [_register(NODE_B), body])
    assert err is None, err  # the agent half-closed: the session ends normally
    assert received >= 1  # SessionInfo at least


def _client_hello() -> bytes:
    """The first flight of a real TLS client to the manager: its ClientHello."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    outgoing = ssl.MemoryBIO()
    tls = context.wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname=MANAGER_NAME)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    assert hello[:1] == b"\x16" and len(hello) > 100, hello[:16]  # a handshake record
    return hello


def _idle_connections(address: str, count: int) -> list[socket.socket]:
    """Connections that never finish the TLS handshake: some send nothing, some half a
    ClientHello, some a whole one and never answer the server's reply, some speak
    plaintext HTTP/2 (the preface) to the TLS port."""
    host, port = address.rsplit(":", 1)
    hello = _client_hello()
    openings = [b"", hello[:len(hello) // 2], hello, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]
    idle: list[socket.socket] = []
    for i in range(count):
        sock = socket.create_connection((host, int(port)), timeout=5)
        if openings[i % len(openings)]:
            sock.sendall(openings[i % len(openings)])
        idle.append(sock)
    return idle


def _closed_by_server(idle: list[socket.socket], closed: set[int]) -> bool:
    for i, sock in enumerate(idle):
        if i in closed:
            continue
        try:
            # What the server sent (its handshake reply, an alert) comes before the close (b"").
            while sock.recv(65536):
                pass
        except BlockingIOError:
            continue
        except ConnectionResetError:
            pass
        closed.add(i)
    return len(closed) == len(idle)


@pytest.mark.parametrize("port", ["control", "join"])
def test_unfinished_handshakes_are_closed_and_do_not_stop_clients(
        manager: RunningManager, port: str) -> None:
    address = manager.address if port == "control" else manager.join_address
    fds_before = manager.open_fds()
    idle = _idle_connections(address, 500)
    try:
        started = time.monotonic()
        with manager.admin_channel() as channel:
            stub = control_grpc.ControlStub(channel)
            stub.ListNodes(control.ListNodesRequest(), timeout=5)
        assert time.monotonic() - started < 2.0

        for sock in idle:
            sock.setblocking(False)
        closed: set[int] = set()
        started = time.monotonic()
        eventually(lambda: _closed_by_server(idle, closed), timeout=HANDSHAKE_TIMEOUT_S + 10,
                   what="unfinished handshakes closed")
        print(f"{port} port: {len(idle)} connections that never finished the TLS handshake "
              f"closed within {time.monotonic() - started:.1f} s of the first call")
        eventually(lambda: manager.open_fds() <= fds_before + 5, timeout=10,
                   what="manager's sockets released")
    finally:
        for sock in idle:
            sock.close()


def _join(channel: grpc.Channel, token: str, node_id: str) -> grpc.StatusCode:
    request = dispatcher.JoinRequest(token=token, node_id=node_id,
                                     csr=certificate_request(new_key(), node_id))
    try:
        dispatcher_grpc.JoinStub(channel).JoinCluster(request, timeout=10)
    except grpc.RpcError as err:
        return err.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def test_a_flood_of_failed_joins_is_refused_and_logged_briefly(manager: RunningManager) -> None:
    """Joins with a wrong token from one address: the first JOIN_FAILURES are refused
    (PERMISSION_DENIED), then its wrong tokens get RESOURCE_EXHAUSTED; the right token still
    joins (agents behind the same address are not locked out)."""
    ca = Credentials.load(manager.cluster.credentials).ca
    right = JoinToken.parse(manager.cluster.token_file().read_text())
    wrong = [str(JoinToken(right.ca_digest, new_secret())), "PODIUM1-not-a-token", ""]
    before = len(manager.log_lines())
    codes: list[grpc.StatusCode] = []
    credentials = grpc.ssl_channel_credentials(root_certificates=ca)
    with grpc.secure_channel(manager.join_address, credentials,
                             options=CHANNEL_OPTIONS) as channel:
        for i in range(300):
            codes.append(_join(channel, wrong[i % len(wrong)], f"flood-{i}"))
        after_flood = _join(channel, str(right), "flood-right")
    counts = Counter(code.name for code in codes)
    assert codes[:JOIN_FAILURES] == [grpc.StatusCode.PERMISSION_DENIED] * JOIN_FAILURES
    assert set(codes[JOIN_FAILURES:]) == {grpc.StatusCode.RESOURCE_EXHAUSTED}, counts
    assert after_flood == grpc.StatusCode.OK
    new = manager.log_lines()[before:]
    assert not any("Traceback" in line for line in new), "\n".join(new)
    about_joins = [line for line in new if "refused a join" in line]
    assert 1 <= len(about_joins) <= 3, "\n".join(new)
    assert len(new) <= 5, "\n".join(new)
    # Nothing else was admitted.
    with manager.admin_channel() as channel:
        nodes = control_grpc.ControlStub(channel).ListNodes(control.ListNodesRequest(),
                                                            timeout=10).nodes
        assert not [n.id for n in nodes if n.id.startswith("flood-") and n.id != "flood-right"]
    print(f"301 joins from one address, 300 with a wrong token: {dict(counts)}, then the "
          f"right token: {after_flood.name}; {len(about_joins)} log lines, no traceback")
