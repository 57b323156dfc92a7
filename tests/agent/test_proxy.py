"""podium.agent.proxy: listeners and the mesh against asyncio backends on 127.0.0.1 (no Docker).

Every test runs on asyncio's default loop and, when installed, on uvloop's: the proxy must work
on whichever loop runs it. Waits poll with a deadline (`eventually`), never a bare sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import struct

import pytest

from podium.agent.meshspec import Endpoint, ListenerSpec
from podium.agent.proxy import (
    LeastConnections,
    Listener,
    Mesh,
    RoundRobin,
    proxy_header,
)
from tests.agent._proxykit import (
    HOST,
    Backend,
    Client,
    Run,
    ask,
    free_port,
    full_accept_queue,
)
from tests.helpers import eventually_async


def test_balancers_are_pure() -> None:
    a, b, c = (Endpoint(k, HOST, 1) for k in "abc")
    rr = RoundRobin()
    assert [rr.pick([a, b, c], {}, ()) for _ in range(4)] == [a, b, c, a]
    assert rr.pick([a, b, c], {}, {"b", "c"}) == a
    assert rr.pick([a], {}, {"a"}) is None
    lc = LeastConnections()
    assert lc.pick([a, b, c], {"a": 2, "b": 0, "c": 1}, ()) == b
    assert lc.pick([a, b, c], {"a": 2, "b": 0, "c": 1}, {"b"}) == c
    assert {lc.pick([a, b, c], {}, ()) for _ in range(3)} == {a, b, c}  # ties rotate
    assert lc.pick([], {}, ()) is None


def test_proxy_header_formats() -> None:
    assert proxy_header(("10.0.0.1", 5000), ("10.0.0.2", 80)) == (
        b"PROXY TCP4 10.0.0.1 10.0.0.2 5000 80\r\n")
    assert proxy_header(("::1", 5000, 0, 0), ("::1", 80, 0, 0)) == b"PROXY TCP6 ::1 ::1 5000 80\r\n"
    assert proxy_header(("::ffff:1.2.3.4", 1, 0, 0), ("::ffff:5.6.7.8", 2, 0, 0)) == (
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n")
    assert proxy_header(None, None) == b"PROXY UNKNOWN\r\n"


def test_forwards_megabytes_both_ways(run: Run) -> None:
    payload = os.urandom(8 << 20)

    async def main() -> None:
        async with Backend("a", "echo") as backend, Listener(port=0, host=HOST) as listener:
            listener.set_endpoints([backend.endpoint])
            client = await Client.connect(listener.port)

            async def send() -> None:
                for i in range(0, len(payload), 1 << 20):
                    client.writer.write(payload[i:i + (1 << 20)])
                    await client.writer.drain()

            sender = asyncio.create_task(send())
            echoed = await client.reader.readexactly(len(payload))
            await sender
            assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()
            client.writer.write_eof()
            assert await client.reader.read() == b"bye"
            await client.close()
            await eventually_async(lambda: listener.stats() == {"a": 0},
                                   what="connection counted out")
            # Every byte counted each way (the backend's "bye" too), one connect timed.
            traffic = listener.traffic
            assert (traffic.bytes_in, traffic.bytes_out) == (len(payload), len(payload) + 3)
            assert sum(traffic.connects) == 1 and 0 < traffic.connect_seconds < 5
            assert traffic.connect_failures == 0

    run(main)


def test_flow_control_pushes_back_to_the_client(run: Run) -> None:
    """A backend that does not read stalls the client instead of filling the proxy's memory:
    64 MiB is far more than the kernel's socket buffers on the way can hold."""
    payload = os.urandom(64 << 20)

    async def main() -> None:
        async with Backend("a", "sink") as backend, Listener(port=0, host=HOST) as listener:
            listener.set_endpoints([backend.endpoint])
            client = await Client.connect(listener.port)
            client.writer.write(payload)
            drained = asyncio.create_task(client.writer.drain())
            done, _ = await asyncio.wait([drained], timeout=1.0)
            assert not done, "the proxy read 64 MiB that its backend would not take"
            buffered = sum(c.client.transport.get_write_buffer_size()
                           + (c.backend.transport.get_write_buffer_size() if c.backend else 0)
                           for c in listener.connections)
            assert buffered < 1 << 20
            backend.release.set()
            await drained
            client.writer.write_eof()
            await eventually_async(lambda: backend.received, what="backend received everything")
            assert backend.received[0] == payload
            await client.close()

    run(main)


def test_half_close_is_passed_on_both_ways(run: Run) -> None:
    async def main() -> None:
        async with (Backend("echo", "echo") as echo, Backend("greet", "greet") as greet,
                    Listener(port=0, host=HOST, balance="round-robin") as listener):
            # The client half-closes first: the backend still answers after seeing the EOF.
            listener.set_endpoints([echo.endpoint])
            client = await Client.connect(listener.port)
            client.writer.write(b"ping")
            client.writer.write_eof()
            assert await client.reader.read() == b"pingbye"
            await client.close()
            # The backend half-closes first: the client can still send afterwards.
            listener.set_endpoints([greet.endpoint])
            client = await Client.connect(listener.port)
            assert await client.reader.read() == b"hello"
            client.writer.write(b"still here")
            client.writer.write_eof()
            await eventually_async(lambda: greet.received,
                                   what="backend got the client's last words")
            assert greet.received == [b"still here"]
            await eventually_async(lambda: not listener.connections, what="pair closed")
            await client.close()
            assert listener.stats() == {"greet": 0}

    run(main)


def test_least_connections_picks_the_least_loaded(run: Run) -> None:
    async def main() -> None:
        async with (Backend("a") as a, Backend("b") as b,
                    Listener(port=0, host=HOST) as listener):
            listener.set_endpoints([a.endpoint, b.endpoint])
            held = [await Client.connect(listener.port) for _ in range(4)]
            names = [await c.ask() for c in held]
            assert sorted(names) == ["a", "a", "b", "b"]
            assert listener.stats() == {"a": 2, "b": 2}
            for client, name in zip(held, names, strict=True):
                if name == "a":
                    await client.close()
            await eventually_async(lambda: listener.stats() == {"a": 0, "b": 2}, what="a drained")
            # Round-robin would send one of these to b; least-connections sends both to a.
            more = [await Client.connect(listener.port) for _ in range(2)]
            assert [await c.ask() for c in more] == ["a", "a"]
            assert listener.stats() == {"a": 2, "b": 2}
            for client in [*held, *more]:
                await client.close()
            await eventually_async(lambda: listener.stats() == {"a": 0, "b": 0}, what="all closed")

    run(main)


def test_round_robin_alternates(run: Run) -> None:
    async def main() -> None:
        async with (Backend("a") as a, Backend("b") as b,
                    Listener(port=0, host=HOST, balance="round-robin") as listener):
            listener.set_endpoints([a.endpoint, b.endpoint])
            names = [await ask(listener.port) for _ in range(6)]
            assert names in (["a", "b"] * 3, ["b", "a"] * 3)

    run(main)


@pytest.mark.parametrize("balance", ["least-connections", "round-robin"])
def test_a_refusing_backend_costs_clients_nothing(run: Run, balance: str) -> None:
    async def main() -> None:
        async with Backend("live") as live, Listener(port=0, host=HOST, balance=balance) as lst:
            lst.set_endpoints([Endpoint("dead", HOST, free_port()), live.endpoint])
            names = [await ask(lst.port) for _ in range(100)]
            assert names == ["live"] * 100
            assert lst.traffic.connect_failures >= 1  # counted (the agent's backend errors metric)
            await eventually_async(lambda: lst.stats() == {"dead": 0, "live": 0},
                                   what="counted out")

    run(main)


def test_a_backend_that_never_answers_is_skipped_after_the_timeout(run: Run) -> None:
    async def main() -> None:
        # Connecting to a full accept queue hangs until the proxy's connect_timeout.
        with full_accept_queue() as (blackhole, _):
            hung = Endpoint("hung", HOST, blackhole.getsockname()[1])
            async with (Backend("live") as live,
                        Listener(port=0, host=HOST, balance="round-robin",
                                 connect_timeout=0.2) as listener):
                listener.set_endpoints([hung, live.endpoint])
                loop = asyncio.get_running_loop()
                started = loop.time()
                assert [await ask(listener.port) for _ in range(4)] == ["live"] * 4
                assert loop.time() - started < 2.0
                assert listener.traffic.connect_failures >= 1  # a timeout counts as a failure

    run(main)


def test_a_syn_dropped_by_a_full_accept_queue_gets_its_retransmit_before_the_timeout(
        run: Run) -> None:
    """A replica's accept queue that was full for a moment (a burst of connections): the SYN it
    dropped is sent again by the kernel a second later, and the default connect timeout leaves
    room for that retransmit; at 1 s the proxy gave the replica up just as it went out."""

    async def main() -> None:
        with full_accept_queue() as (blackhole, filler):
            late = Endpoint("late", HOST, blackhole.getsockname()[1])

            async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                with contextlib.suppress(ConnectionError):
                    if await reader.readline():
                        writer.write(b"late\n")
                        await writer.drain()
                writer.close()

            async with Listener(port=0, host=HOST) as listener:
                listener.set_endpoints([late])
                loop = asyncio.get_running_loop()
                started = loop.time()
                asking = asyncio.ensure_future(ask(listener.port))
                await eventually_async(lambda: listener.stats() == {"late": 1}, what="dialing")
                await asyncio.sleep(0.3)  # the queue stays full a moment, then drains
                blackhole.setblocking(False)
                server = await asyncio.start_server(answer, sock=blackhole.dup())
                filler.close()
                try:
                    assert await asyncio.wait_for(asking, 5) == "late"
                    assert 0.9 < loop.time() - started < 1.45  # the retransmit, 1 s after
                    assert listener.traffic.connect_failures == 0
                finally:
                    server.close()

    run(main)


def test_a_client_leaving_while_its_backend_connects_leaves_nothing_behind(run: Run) -> None:
    """A reset client is dropped at once; one that only sent EOF may still want its answer, so
    that one waits for the backend (up to connect_timeout), as in HAProxy."""

    async def main() -> None:
        with full_accept_queue() as (blackhole, _):
            hung = Endpoint("hung", HOST, blackhole.getsockname()[1])
            async with Listener(port=0, host=HOST, connect_timeout=5) as listener:
                listener.set_endpoints([hung])
                client = await Client.connect(listener.port)
                client.writer.write(b"early bytes")
                await eventually_async(lambda: listener.stats() == {"hung": 1}, what="dialing")
                sock = client.writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                await client.close()  # a reset: linger on with a zero timeout
                await eventually_async(lambda: not listener.connections, timeout=2.0,
                                 what="connection dropped before connect_timeout")
                assert listener.stats() == {"hung": 0}

    run(main)


def test_a_backend_closing_at_once_closes_its_client(run: Run) -> None:
    async def main() -> None:
        async with (Backend("slam", "slam") as slam,
                    Listener(port=0, host=HOST) as listener):
            listener.set_endpoints([slam.endpoint])
            for _ in range(20):
                client = await Client.connect(listener.port)
                client.writer.write(b"x" * 100_000)  # more than is buffered before it connects
                assert await client.reader.read() == b""
                await client.close()
            await eventually_async(lambda: not listener.connections, what="pairs closed")
            assert listener.stats() == {"slam": 0}

    run(main)


def test_no_reachable_endpoint_closes_the_client(run: Run) -> None:
    async def main() -> None:
        async with Listener(port=0, host=HOST) as listener:
            assert await ask(listener.port) == ""  # no endpoints: accepted and closed at once
            listener.set_endpoints([Endpoint("dead1", HOST, free_port()),
                                    Endpoint("dead2", HOST, free_port())])
            assert await ask(listener.port) == ""
            assert listener.stats() == {"dead1": 0, "dead2": 0}

    run(main)


def test_removed_endpoint_drains_while_new_connections_go_elsewhere(run: Run) -> None:
    async def main() -> None:
        async with (Backend("a") as a, Backend("b") as b,
                    Listener(port=0, host=HOST) as listener):
            listener.set_endpoints([a.endpoint])
            old = await Client.connect(listener.port)
            assert await old.ask() == "a"
            listener.set_endpoints([b.endpoint])
            assert await old.ask() == "a"
            new = await Client.connect(listener.port)
            assert [await new.ask(), await ask(listener.port)] == ["b", "b"]
            assert await old.ask() == "a"
            await eventually_async(lambda: listener.stats() == {"a": 1, "b": 1}, what="2 held")
            await old.close()
            await eventually_async(lambda: listener.stats() == {"b": 1}, what="a drained away")
            await new.close()

    run(main)


def test_proxy_protocol_header_comes_first(run: Run) -> None:
    async def main() -> None:
        async with (Backend("sink", "sink") as sink,
                    Listener(port=0, host=HOST, proxy_protocol=True) as listener):
            listener.set_endpoints([sink.endpoint])
            sink.release.set()
            client = await Client.connect(listener.port)
            client_port = client.writer.get_extra_info("sockname")[1]
            client.writer.write(b"payload")
            client.writer.write_eof()
            await eventually_async(lambda: sink.received, what="backend got the connection")
            header = f"PROXY TCP4 {HOST} {HOST} {client_port} {listener.port}\r\n".encode()
            assert sink.received == [header + b"payload"]
            await client.close()

    run(main)


def test_stop_leaves_open_connections_unless_asked(run: Run) -> None:
    async def main() -> None:
        async with Backend("a") as a:
            listener = Listener(port=0, host=HOST)
            listener.set_endpoints([a.endpoint])
            await listener.start()
            port = listener.port
            clients = [await Client.connect(port) for _ in range(3)]
            assert [await c.ask() for c in clients] == ["a"] * 3
            assert listener.stats() == {"a": 3}
            await listener.stop()
            await listener.stop()  # idempotent
            with pytest.raises(ConnectionRefusedError):
                await Client.connect(port)
            assert [await c.ask() for c in clients] == ["a"] * 3
            await clients[0].close()
            await eventually_async(lambda: listener.stats() == {"a": 2}, what="one closed")
            await listener.stop(close_connections=True)
            assert listener.stats() == {"a": 0}
            assert [await c.ask() for c in clients[1:]] == ["", ""]
            for client in clients:
                await client.close()

    run(main)


def test_mesh_applies_ports_and_reports_the_one_in_use(run: Run) -> None:
    async def main() -> None:
        p1, p2 = free_port(), free_port()
        with socket.socket() as blocker:
            blocker.bind((HOST, 0))
            blocker.listen()
            p3 = blocker.getsockname()[1]
            async with Backend("a") as a, Backend("b") as b, Mesh(host=HOST) as mesh:
                assert await mesh.apply({p1: ListenerSpec((a.endpoint,)),
                                         p2: ListenerSpec((b.endpoint,), "round-robin")}) == []
                assert [await ask(p1), await ask(p2)] == ["a", "b"]
                errors = await mesh.apply({p1: ListenerSpec((b.endpoint,)),
                                           p3: ListenerSpec((a.endpoint,))})
                assert len(errors) == 1 and errors[0].startswith(f"port {p3} in use: "), errors
                assert await ask(p1) == "b"  # reconfigured in place
                with pytest.raises(ConnectionRefusedError):
                    await ask(p2)
                await eventually_async(lambda: mesh.stats() == {p1: {"b": 0}},
                                       what="p1 counted out")
                assert await mesh.apply({p1: ListenerSpec(balance="nope")}) == [
                    f"port {p1}: unknown balance 'nope' (one of least-connections, round-robin)"]
                blocker.close()
                assert await mesh.apply({p1: ListenerSpec((b.endpoint,)),
                                         p3: ListenerSpec((a.endpoint,))}) == []
                assert [await ask(p1), await ask(p3)] == ["b", "a"]
                held = await Client.connect(p3)
                assert await held.ask() == "a"
                await eventually_async(lambda: mesh.stats() == {p1: {"b": 0}, p3: {"a": 1}},
                                 what="only the held connection counted")
                assert await mesh.apply({p1: ListenerSpec((b.endpoint,))}) == []
                assert await held.ask() == "a"  # a removed port's connections drain
                assert mesh.stats() == {p1: {"b": 0}, p3: {"a": 1}}
                await mesh.close()
                assert await held.ask() == ""
                await held.close()
                with pytest.raises(ConnectionRefusedError):
                    await ask(p1)

    run(main)


def test_requests_count_connections_and_outlive_endpoints_and_listeners(run: Run) -> None:
    """Every forwarded connection counts one request for its endpoint, whatever it speaks; the
    counts never decrease: not when an endpoint is removed, nor when its port or the mesh stops."""
    async def main() -> None:
        p1, p2 = free_port(), free_port()
        async with Backend("a") as a, Backend("b") as b, Mesh(host=HOST) as mesh:
            assert mesh.requests() == {}
            assert await mesh.apply({p1: ListenerSpec((a.endpoint,)),
                                     p2: ListenerSpec((b.endpoint,))}) == []
            assert mesh.requests() == {p1: {"a": 0}, p2: {"b": 0}}  # listed before they count
            assert [await ask(p1) for _ in range(3)] == ["a"] * 3
            held = await Client.connect(p2)
            assert [await held.ask() for _ in range(4)] == ["b"] * 4  # not HTTP: one request
            assert mesh.requests() == {p1: {"a": 3}, p2: {"b": 1}}
            # a is no longer p1's endpoint, and p2 is no longer published (its connection drains)
            assert await mesh.apply({p1: ListenerSpec((b.endpoint,))}) == []
            assert await ask(p1) == "b"
            assert await held.ask() == "b"
            assert mesh.requests() == {p1: {"a": 3, "b": 1}, p2: {"b": 1}}
            await held.close()
            await eventually_async(lambda: mesh.stats() == {p1: {"b": 0}}, what="p2 drained")
            assert await mesh.apply({p1: ListenerSpec((b.endpoint,))}) == []  # p2 dropped
            assert mesh.requests() == {p1: {"a": 3, "b": 1}, p2: {"b": 1}}
            assert await mesh.apply({p2: ListenerSpec((a.endpoint,))}) == []  # p2 again
            assert mesh.requests() == {p1: {"a": 3, "b": 1}, p2: {"a": 0, "b": 1}}
            assert await ask(p2) == "a"
            assert mesh.requests() == {p1: {"a": 3, "b": 1}, p2: {"a": 1, "b": 1}}
            await mesh.close()
            assert mesh.requests() == {p1: {"a": 3, "b": 1}, p2: {"a": 1, "b": 1}}

    run(main)


def test_requests_count_each_http_request_on_a_kept_alive_connection(run: Run) -> None:
    async def main() -> None:
        async with (Backend("a", "http") as a, Backend("b", "http") as b,
                    Listener(port=0, host=HOST, balance="round-robin") as listener):
            listener.set_endpoints([a.endpoint, b.endpoint])
            first = await Client.connect(listener.port)
            second = await Client.connect(listener.port)
            assert [await first.get(f"/{i}") for i in range(5)] == ["a"] * 5
            assert [await second.get() for _ in range(2)] == ["b"] * 2
            assert listener.requests == {"a": 5, "b": 2}
            listener.set_endpoints([b.endpoint])  # a's connection drains, and still counts
            assert await first.get() == "a"
            assert listener.requests == {"a": 6, "b": 2}
            await listener.stop()
            assert await second.get() == "b"
            assert listener.requests == {"a": 6, "b": 3}
            assert len(a.received) == 6  # each request reached the backend once
            for client in (first, second):
                await client.close()

    run(main)
