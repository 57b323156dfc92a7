"""podium.agent.loadstream and the agent's wiring of the mesh's counters into its load reports.

Every report carries the mesh's figures: task id -> connections open and task id -> requests
forwarded since the agent started (counters the manager turns into rates). The mesh runs in the
test's event loop against asyncio backends on 127.0.0.1 (no Docker, no manager).
"""

from __future__ import annotations

import asyncio

from podium.agent.agent import Agent
from podium.agent.loadstream import LoadStream
from podium.agent.meshspec import ListenerSpec
from podium.agent.proxy import Mesh
from podium.agent.sampler import LoadSampler
from podium.lab.fakeexec import FakeExecutor
from tests.agent._proxykit import Backend, Client, ask, free_port


def test_every_report_carries_the_mesh_counters() -> None:
    requests = {"t1": 7, "t2": 3}
    stream = LoadStream(sampler=LoadSampler(), running=dict, connections=lambda: {"t1": 2},
                        requests=lambda: dict(requests), summary_every=3)
    reports = []
    for _ in range(4):  # summaries and the reports between them alike
        reports.append(stream.next_report())
        requests["t1"] += 1
    assert [r.summary for r in reports] == [True, False, False, True]
    assert [dict(r.requests) for r in reports] == [{"t1": 7 + i, "t2": 3} for i in range(4)]
    assert all(dict(r.connections) == {"t1": 2} for r in reports)
    assert not any(r.mesh_uncounted for r in reports)


def test_a_mesh_that_counts_nothing_says_so_in_every_report() -> None:
    stream = LoadStream(sampler=LoadSampler(), running=dict, mesh_counted=False, summary_every=2)
    assert all(stream.next_report().mesh_uncounted for _ in range(3))


async def test_the_agent_reports_requests_per_task_summed_over_ports() -> None:
    agent = Agent(manager="127.0.0.1:1", name="n1", node_id="n" * 20, executor=FakeExecutor(),
                  mesh_workers=0)
    mesh = agent._mesh
    assert isinstance(mesh, Mesh)
    p1, p2 = free_port(), free_port()
    # Task t1 serves HTTP on one port and a line protocol on another (two backends, one key).
    async with (Backend("t1", "http") as t1, Backend("t1") as t1_lines, Backend("t2") as t2,
                asyncio.timeout(30)):
        try:
            assert dict(agent._load.next_report().requests) == {}
            assert await mesh.apply({p1: ListenerSpec((t1.endpoint,)),
                                     p2: ListenerSpec((t1_lines.endpoint, t2.endpoint),
                                                      "round-robin")}) == []
            assert dict(agent._load.next_report().requests) == {"t1": 0, "t2": 0}
            client = await Client.connect(p1)
            assert [await client.get() for _ in range(3)] == ["t1"] * 3  # 3 kept-alive requests
            assert sorted([await ask(p2), await ask(p2)]) == ["t1", "t2"]
            report = agent._load.next_report()
            assert dict(report.requests) == {"t1": 4, "t2": 1}
            await client.close()
            assert await mesh.apply({}) == []  # nothing published any more: the counts stay
            assert dict(agent._load.next_report().requests) == {"t1": 4, "t2": 1}
        finally:
            await mesh.close()
