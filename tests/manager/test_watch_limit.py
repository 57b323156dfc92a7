"""A `podium events` client that stops reading costs the manager bounded memory.

A real manager process (no engine: one node is a RawAgent that confirms what it is given), a
client that opens WatchEvents and then reads nothing, and 100,000 store changes (100 status
reports of 1,000 tasks each, the cheapest way to make that many). gRPC's flow control stops the
manager's event generator once the HTTP/2 window is full, so the changes would pile up in the
watch's in-process queue: it is bounded (controlapi.WATCH_LIMIT), so the manager's RSS stays
flat and the client, when it reads at last, is told to reconnect (RESOURCE_EXHAUSTED).
"""

from __future__ import annotations

import asyncio
import pathlib

import grpc
import pytest

from podium.manager.controlapi import WATCH_LIMIT
from podium.v1 import control, control_grpc, objects
from tests.fakes import RawAgent
from tests.helpers import Cluster, eventually_async

# Real manager processes: the security lane (README, Tests), not the fast lane.
pytestmark = pytest.mark.security

TASKS = 1_000
REPORTS = 100  # x TASKS = 100,000 changes
MiB = 1 << 20
# A task change held in the queue costs ~1.3 KB of the manager's RSS (one protobuf copy per
# committed version): unbounded, the 100,000 changes grew it by 123 MiB (measured). Bounded, the
# queue holds at most WATCH_LIMIT (20,000: ~26 MB) before it is cut off and emptied (measured:
# 6 MiB of growth); the rest of the bound is slack for the allocator and SQLite's page cache.
RSS_GROWTH_BOUND = 40 * MiB


def rss(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def status(message: str) -> objects.TaskStatus:
    return objects.TaskStatus(state=objects.TASK_STATE_RUNNING, message=message)


@pytest.mark.timeout(120)
async def test_a_client_that_never_reads_is_cut_off_and_costs_bounded_memory(
    tmp_path: pathlib.Path,
) -> None:
    assert WATCH_LIMIT < TASKS * REPORTS
    cluster = Cluster(tmp_path)
    cluster.start_manager()
    try:
        pid = cluster.procs["manager"].pid
        node = await cluster.node_credentials("f" * 20, f"127.0.0.1:{cluster.join_port}",
                                              tmp_path / "fake")
        async with (
            RawAgent(cluster.address, "fake", "f" * 20, credentials=node) as agent,
            cluster.secure_channel() as channel,
        ):
            api = control_grpc.ControlStub(channel)
            spec = objects.ServiceSpec(name="w", replicas=TASKS)
            spec.container.image = "app:1"
            await api.CreateService(control.CreateServiceRequest(spec=spec))

            async def all_assigned() -> list[str]:
                listed = await api.ListTasks(control.ListTasksRequest(service="w"))
                ids = [t.id for t in listed.tasks if t.node_id == agent.node_id]
                return ids if len(ids) == TASKS else []

            task_ids = await eventually_async(all_assigned, timeout=30, interval=0.2,
                                              what=f"{TASKS} tasks assigned")

            watch = api.WatchEvents(control.WatchEventsRequest(kinds=["task"]))
            # The call subscribes in the background: change a task until its first event comes.
            first = asyncio.create_task(watch.read())
            for n in range(100):
                agent.report((task_ids[0], status(f"warm-up {n}")))
                if (await asyncio.wait({first}, timeout=0.1))[0]:
                    break
            await first  # subscribed: from here on the client reads nothing
            before = rss(pid)

            for n in range(REPORTS):
                agent.report(*((t, status(f"report {n}")) for t in task_ids))

            async def all_applied() -> bool:
                last = await api.GetTask(control.GetRequest(ref=task_ids[-1]))
                return last.task.status.message == f"report {REPORTS - 1}"

            await eventually_async(all_applied, timeout=90, interval=0.2,
                                   what="every report applied")
            growth = rss(pid) - before
            assert growth < RSS_GROWTH_BOUND, f"manager RSS grew {growth / MiB:.0f} MiB"

            # Reading at last: what gRPC had buffered, then the cut-off.
            with pytest.raises(grpc.aio.AioRpcError) as err:
                for _ in range(TASKS * REPORTS):
                    await watch.read()
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "reconnect" in (err.value.details() or "")
    finally:
        cluster.close()
