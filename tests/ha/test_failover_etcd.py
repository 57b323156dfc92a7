"""Three managers on one etcd store (real processes), agents in this process on the fake
executor: the CLI given a follower first reaches the leader, a leader killed (-9) is replaced,
the agents move to the new one by themselves, nothing that ran is restarted, and the new leader
dispatches (a scale-up's new task runs)."""

from __future__ import annotations

import asyncio
import pathlib
import subprocess
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from podium.agent.agent import Agent
from podium.agent.certificate import NodeCertificate
from podium.lab.etcd import EtcdCluster
from podium.lab.local import PODIUM
from podium.lab.managers import ManagerGroup
from podium.rules.certs import JoinToken
from podium.v1 import objects
from tests.fakes import FakeExecutor
from tests.helpers import eventually_async

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(180)]

RUNNING = objects.TASK_STATE_RUNNING


@pytest.fixture
def group(tmp_path: pathlib.Path) -> Iterator[ManagerGroup]:
    with EtcdCluster(3) as etcd, ManagerGroup(tmp_path, etcd) as managers:
        yield managers


@pytest.fixture
async def agents(group: ManagerGroup, tmp_path: pathlib.Path) -> AsyncIterator[list[Agent]]:
    token = JoinToken.parse(group.token_file().read_text())
    joins = ",".join(f"127.0.0.1:{port}" for port in group.join_ports)
    started = []
    try:
        for name in ("a", "b"):
            certificate = NodeCertificate(data_dir=tmp_path / name, node_id=f"node-{name}",
                                          manager=group.address, join_address=joins,
                                          token=token)
            await certificate.ensure()
            agent = Agent(manager=group.address, name=name, node_id=f"node-{name}",
                          executor=FakeExecutor(), certificate=certificate)
            await agent.start()
            started.append(agent)
        yield started
    finally:
        for agent in started:
            await agent.stop()


def _cli(group: ManagerGroup, order: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PODIUM, "--manager", ",".join(order), "--credentials",
                           str(group.credentials), *args], capture_output=True, text=True,
                          timeout=60)


def _tasks(group: ManagerGroup) -> dict[str, tuple[str, int]]:
    """Running tasks of web: id -> (node, restarts), as any manager reads them."""
    with group.client() as client:
        return {t.id: (t.node_id, t.status.restarts) for t in client.tasks(service="web")
                if t.status.state == RUNNING and t.desired_state == RUNNING}


async def test_a_killed_leader_is_replaced_and_nothing_restarts(
        group: ManagerGroup, agents: list[Agent], tmp_path: pathlib.Path) -> None:
    leader = group.leader()
    assert leader is not None
    follower = next(i for i in range(3) if i != leader)
    # The CLI given a follower first: its write is refused with the hint and goes to the leader.
    stack = tmp_path / "web.yaml"
    stack.write_text("services:\n  web:\n    image: app:1\n    deploy:\n      replicas: 4\n")
    first = [group.addresses[follower], *(a for i, a in enumerate(group.addresses)
                                            if i != follower)]
    done = await asyncio.to_thread(_cli, group, first, "deploy", "-f", str(stack))
    assert done.returncode == 0, (done.stdout, done.stderr)
    before = await eventually_async(lambda: (lambda t: t if len(t) == 4 else None)(
        _tasks(group)), timeout=30, what="4 tasks of web running")
    # A stream only the leader serves (container output over the agents' sessions), asked of a
    # follower first: reopened on the leader it names.
    logs = await asyncio.to_thread(_cli, group, first, "logs", "web")
    assert logs.returncode == 0, (logs.stdout, logs.stderr)

    for _round in range(2):
        leader = group.leader()
        assert leader is not None
        killed_at = group.kill(f"manager{leader}")
        # Reads go on while the managers elect a new leader (the load figures, the leader's
        # alone, may be missing from them).
        listed = await asyncio.to_thread(_cli, group, group.addresses, "ps", "web")
        assert listed.returncode == 0 and listed.stdout.count("web.") >= 4, listed
        new = await eventually_async(lambda: [group.leader()] if group.leader() is not None
                                     else None, timeout=15, what="a new leader")
        assert new != [leader]
        elected_in = time.monotonic() - killed_at
        assert elected_in < 8, elected_in
        # Writes through whichever manager is listed first still land (the dead one first).
        order = [group.addresses[leader], *(a for i, a in enumerate(group.addresses)
                                            if i != leader)]
        replicas = 5 + _round
        scaled = await asyncio.to_thread(_cli, group, order, "scale", f"web={replicas}")
        assert scaled.returncode == 0, (scaled.stdout, scaled.stderr)
        await eventually_async(lambda r=replicas: len(_tasks(group)) == r,  # type: ignore[misc]
                               timeout=30, what="the new task running through the new leader")
        after = _tasks(group)
        # No task that ran was replaced or restarted: the agents' sessions came back to the
        # new leader within their nodes' grace.
        for task_id, (node, restarts) in before.items():
            assert after.get(task_id) == (node, restarts), (task_id, after)
        with group.client() as client:
            assert all(n.status.state == objects.NodeStatus.STATE_READY
                       for n in client.nodes())
        group.start_manager(leader)  # back as a follower
        before = after


def test_a_manager_with_a_ca_of_its_own_is_refused(group: ManagerGroup,
                                                   tmp_path: pathlib.Path) -> None:
    assert group.etcd is not None
    lone = subprocess.run(
        [*PODIUM, "manager", "--listen", "127.0.0.1:0", "--join-listen", "127.0.0.1:0",
         "--data-dir", str(tmp_path / "stranger"), "--store", group.etcd.url,
         "--admin-credentials", "none", "--metrics-listen", "off", "--dashboard", "off"],
        capture_output=True, text=True, timeout=60)
    assert lone.returncode == 1
    assert "cluster CA" in lone.stderr and "pki/ and keys/" in lone.stderr, lone.stderr
