"""podium.agent.proxy with endpoints behind a relay (podium.agent.relay) and with an admission
check: what internal routing relies on. On asyncio's loop and, when installed, uvloop's."""

from __future__ import annotations

import asyncio

from podium.agent.meshspec import Endpoint
from podium.agent.proxy import Listener
from podium.agent.relay import Relay, preamble
from podium.rules.routing import ROUND_ROBIN
from tests.agent._proxykit import HOST, Backend, Client, Run, ask, serving_relay
from tests.helpers import eventually_async


def relayed(relay: Relay, task_id: str, backend: Backend) -> Endpoint:
    """The endpoint of replica `task_id`, listening at `backend`, reached through `relay`."""
    return Endpoint(task_id, HOST, relay.port, preamble(task_id, backend.port))


def test_a_replica_is_reached_through_its_relay_and_the_plus_is_not_passed_on(run: Run) -> None:
    async def main() -> None:
        async with Backend("a", "echo") as backend, \
                serving_relay({("t1", backend.port): HOST}) as relay, \
                Listener(port=0, host=HOST) as listener:
            listener.set_endpoints([relayed(relay, "t1", backend)])
            client = await Client.connect(listener.port)
            client.writer.write(b"hello")
            assert await client.reader.readexactly(5) == b"hello"  # no b"+" before it
            client.writer.write_eof()
            assert await client.reader.read() == b"bye"
            await client.close()
            assert listener.requests == {"t1": 1}
    run(main)


def test_a_relay_that_cannot_reach_its_replica_makes_the_listener_try_another(run: Run) -> None:
    async def main() -> None:
        async with Backend("a") as a, Backend("b") as b, Backend("slam", "slam") as slam, \
                serving_relay({("t1", a.port): HOST}) as relay, \
                Listener(port=0, host=HOST, balance=ROUND_ROBIN) as listener:
            listener.set_endpoints([
                relayed(relay, "gone", b),  # the relay does not know it: answers b"-"
                Endpoint("closes", HOST, slam.port, b"any preamble\n"),  # no answer: closed
                relayed(relay, "t1", a),
            ])
            # Every client gets its answer from the one replica reachable, whichever endpoint
            # the balancer picked first.
            assert [await ask(listener.port) for _ in range(4)] == ["a"] * 4
            await eventually_async(lambda: listener.active == {} or set(
                listener.active.values()) == {0}, what="connections released")
            assert set(listener.requests) == {"t1"}
    run(main)


def test_a_client_refused_by_admit_is_closed_without_contacting_any_endpoint(run: Run) -> None:
    async def main() -> None:
        dialed = 0

        async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal dialed
            dialed += 1
            writer.close()

        server = await asyncio.start_server(count, HOST, 0)
        port = server.sockets[0].getsockname()[1]
        peers: list[object] = []

        def admit(peer: object) -> bool:
            peers.append(peer)
            return False

        try:
            async with Listener(port=0, host=HOST, admit=admit) as listener:
                listener.set_endpoints([Endpoint("t1", HOST, port),
                                        Endpoint("t2", HOST, port, b"PODIUM-RELAY t2 80\n")])
                reader, writer = await asyncio.open_connection(HOST, listener.port)
                writer.write(b"hello\n")
                assert await reader.read() == b""  # closed, nothing forwarded
                writer.close()
                local = writer.get_extra_info("sockname")
                assert [p[:2] for p in peers if isinstance(p, tuple)] == [tuple(local[:2])]
                assert listener.requests == {} and not listener.connections
        finally:
            server.close()
            await server.wait_closed()
        assert dialed == 0
    run(main)
