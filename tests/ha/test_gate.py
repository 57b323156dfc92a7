"""Managers that elect a leader on etcd, each on a store of its own here (the election and what a
follower answers, not the shared state): a follower serves reads, refuses writes and agent
sessions with the leader's address, and an agent given every manager ends up on the leader and
follows a new one."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import signal
from collections.abc import AsyncIterator

import grpc
import pytest

from podium.agent.agent import Agent
from podium.lab.etcd import EtcdCluster
from podium.manager.manager import Manager
from podium.rules import managers
from podium.v1 import control, control_grpc, objects
from tests.fakes import FakeExecutor
from tests.helpers import eventually_async

pytestmark = pytest.mark.etcd


@pytest.fixture
def etcd() -> AsyncIterator[EtcdCluster]:  # type: ignore[misc]
    with EtcdCluster(1) as cluster:
        yield cluster


@contextlib.asynccontextmanager
async def _managers(root: pathlib.Path, etcd: EtcdCluster, n: int) -> AsyncIterator[list[Manager]]:
    started: list[Manager] = []
    try:
        for i in range(n):
            manager = Manager(listen="127.0.0.1:0", data_dir=root / f"m{i}", plaintext=True,
                              election=(tuple(etcd.endpoints), "/gate"), leader_ttl=2)
            await manager.start()
            started.append(manager)
        yield started
    finally:
        for manager in started:
            await manager.stop()


def _leaders(ms: list[Manager]) -> list[Manager]:
    return [m for m in ms if m.leadership is not None and m.leadership.is_leader]


async def test_a_follower_reads_refuses_writes_with_the_hint_and_agents_find_the_leader(
        tmp_path: pathlib.Path, etcd: EtcdCluster) -> None:
    async with _managers(tmp_path, etcd, 2) as ms:
        leader = (await eventually_async(lambda: _leaders(ms), timeout=10, what="a leader"))[0]
        follower = next(m for m in ms if m is not leader)
        await eventually_async(lambda: follower.leadership is not None
                               and follower.leadership.leader is not None, timeout=10)
        async with grpc.aio.insecure_channel(follower.advertised) as channel:
            api = control_grpc.ControlStub(channel)
            assert not (await api.ListServices(control.ListServicesRequest())).services
            spec = objects.ServiceSpec(name="web", replicas=1)
            spec.container.image = "app:1"
            call = api.CreateService(control.CreateServiceRequest(spec=spec))
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "does not lead" in (refused.value.details() or "")
            hint = managers.leader_hint(await call.trailing_metadata())
            assert hint == leader.advertised
        assert follower.terms == 0 and leader.terms == 1

        # An agent given the follower first ends up on the leader.
        agent = Agent(manager=f"{follower.advertised},{leader.advertised}", name="a",
                      node_id="node-a", executor=FakeExecutor())
        await agent.start()
        try:
            await eventually_async(lambda: leader.dispatcher.sessions_open == 1, timeout=10,
                                   what="the agent's session on the leader")
            # The leader goes (a clean stop resigns): the follower leads and the agent moves.
            await leader.stop()
            await eventually_async(lambda: follower.leadership is not None
                                   and follower.leadership.is_leader, timeout=5,
                                   what="the follower leading")
            await eventually_async(lambda: follower.dispatcher.sessions_open == 1, timeout=10,
                                   what="the agent's session on the new leader")
        finally:
            await agent.stop()


async def test_a_leader_whose_etcd_freezes_closes_its_sessions_before_its_lease_ends(
        tmp_path: pathlib.Path, etcd: EtcdCluster) -> None:
    async with _managers(tmp_path, etcd, 1) as ms:
        [leader] = await eventually_async(lambda: _leaders(ms), timeout=10, what="a leader")
        assert leader.leadership is not None
        agent = Agent(manager=leader.advertised, name="a", node_id="node-a",
                      executor=FakeExecutor())
        await agent.start()
        try:
            await eventually_async(lambda: leader.dispatcher.sessions_open == 1, timeout=10)
            loop = asyncio.get_running_loop()
            frozen_at = loop.time()
            for member in etcd.members:
                etcd.signal_member(member, signal.SIGSTOP)
            try:
                def stepped_down() -> bool:
                    try:
                        leader.dispatcher  # noqa: B018 (raises once the term ended)
                    except RuntimeError:
                        return True
                    return False

                await eventually_async(stepped_down, timeout=5, what="the step down")
                # Within TTL - margin of its last renewal, which came before the freeze.
                assert loop.time() - frozen_at < leader.leadership.ttl - \
                    leader.leadership.margin + 0.3
                await eventually_async(lambda: agent._session.lost_for() > 0, timeout=2,
                                       what="the agent's session closed")
            finally:
                for member in etcd.members:
                    etcd.signal_member(member, signal.SIGCONT)
        finally:
            await agent.stop()
