"""The agent's session against a manager that never answers its registration: it gives up after
REGISTER_TIMEOUT_S and tries again, rather than waiting on that call for ever."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from podium.agent import session as session_module
from podium.agent.session import Session
from podium.agent.status import StatusReporter
from podium.v1 import dispatcher, dispatcher_grpc, objects
from tests.helpers import eventually_async


class Mute(dispatcher_grpc.DispatcherServicer):  # type: ignore[misc]
    """Reads the registration and never answers (a manager whose handler is stuck)."""

    def __init__(self) -> None:
        self.registrations = 0

    async def Session(self, request_iterator: AsyncIterator[dispatcher.AgentMessage],
                      context: Any) -> None:
        first = await anext(aiter(request_iterator))
        assert first.HasField("register")
        self.registrations += 1
        await asyncio.Event().wait()


async def test_a_registration_left_unanswered_is_given_up_and_tried_again(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(session_module, "REGISTER_TIMEOUT_S", 0.3)
    server = grpc.aio.server()
    mute = Mute()
    dispatcher_grpc.add_DispatcherServicer_to_server(mute, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()

    async def describe() -> objects.NodeDescription:
        return objects.NodeDescription(name="a")

    session = Session(manager=f"127.0.0.1:{port}", node_id="node-a", describe=describe,
                      on_assignments=lambda _: None, reporter=StatusReporter())
    running = asyncio.create_task(session.run())
    try:
        await eventually_async(lambda: mute.registrations >= 2, timeout=10,
                               what="a second registration after the first went unanswered")
        assert "did not answer this agent's registration within 0.3 s" in caplog.text
        assert session.lost_for() > 0
    finally:
        running.cancel()
        await asyncio.wait({running}, timeout=5)
        assert running.done(), "the session did not end when cancelled"
        await server.stop(None)
