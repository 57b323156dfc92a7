"""When the daemons tell systemd they are ready, on the in-process cluster with real notify
sockets: the manager once its API serves, the agent once its session is open (and its status
line while it reconnects), or after a bound without one."""

from __future__ import annotations

import pathlib

import pytest

from podium.agent import agent as agent_module
from podium.rules.notify import Notifier
from tests.helpers import eventually_async
from tests.inprocess import in_process_cluster
from tests.notifysocket import NotifySocket

pytestmark = pytest.mark.timeout(30)


async def test_ready_when_serving_and_when_the_session_opens(tmp_path: pathlib.Path) -> None:
    with NotifySocket() as manager_sink, NotifySocket() as agent_sink:
        manager_notifier = Notifier.from_environment(manager_sink.env)
        agent_notifier = Notifier.from_environment(agent_sink.env)
        async with in_process_cluster(tmp_path, agents=0, notifier=manager_notifier) as c:
            await eventually_async(lambda: manager_sink.assignments("READY"), timeout=5,
                                   what="the manager's READY")
            (status,) = manager_sink.assignments("STATUS")
            assert status == f"serving on 127.0.0.1:{c.port}; 0 agent session(s)"
            await c.start_agent("node-a", notifier=agent_notifier)
            await eventually_async(lambda: agent_sink.assignments("READY"), timeout=5,
                                   what="the agent's READY")
            assert agent_sink.messages() == [f"READY=1\nSTATUS=session with manager {c.address}"]

            await c.stop_manager()
            await eventually_async(
                lambda: agent_sink.assignments("STATUS")[-1].startswith(
                    f"reconnecting to {c.address}: "), timeout=10, what="reconnecting")
            await c.start_manager()
            await eventually_async(
                lambda: agent_sink.assignments("STATUS")[-1] == f"session with manager {c.address}",
                timeout=10, what="the session again")
            assert agent_sink.assignments("READY") == ["1"]  # once: systemd needs it once
            await c.stop_agent("node-a")
        manager_notifier.close()
        agent_notifier.close()


async def test_ready_without_a_session_after_the_bound(tmp_path: pathlib.Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agent_module, "READY_WITHOUT_SESSION_S", 0.3)
    with NotifySocket() as sink:
        notifier = Notifier.from_environment(sink.env)
        async with in_process_cluster(tmp_path, agents=0) as c:
            port = c.port
            await c.stop_manager()
            agent = await c.start_agent("node-a", notifier=notifier, wait=False)
            await eventually_async(lambda: sink.assignments("READY"), timeout=5,
                                   what="READY without a session")
            (status,) = [m for m in sink.messages() if m.startswith("READY=1")]
            assert status.startswith("READY=1\nSTATUS=no session with the manager yet (")
            assert status.endswith("); retrying")
            assert c.port == port
            await agent.stop()
            c.agents.pop("node-a")
        notifier.close()
