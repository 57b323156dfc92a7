"""Leadership's loop against stand-in etcd stubs (no etcd): a cancelled leadership ends, whatever
its etcd calls were doing when it was cancelled. A manager stops by cancelling it and waiting for
it; one that went on campaigning would keep the manager from stopping and could lead again."""

from __future__ import annotations

import asyncio
from typing import Any

from aetcd import rpc

from podium.manager.leadership import EtcdStubs, LeaderInfo, Leadership
from tests.helpers import eventually_async


class _Lease:
    def __init__(self, calls: list[str], grant: asyncio.Future[Any]) -> None:
        self._calls, self._grant = calls, grant

    def LeaseGrant(self, request: Any) -> asyncio.Future[Any]:
        self._calls.append("grant")
        return self._grant

    def LeaseRevoke(self, request: Any) -> asyncio.Future[Any]:
        self._calls.append("revoke")
        answered = asyncio.get_running_loop().create_future()
        answered.set_result(rpc.LeaseRevokeResponse())
        return answered


class _KV:
    def __init__(self, calls: list[str]) -> None:
        self._calls = calls

    def Txn(self, request: Any) -> asyncio.Future[Any]:
        self._calls.append("txn")
        return asyncio.get_running_loop().create_future()  # never answered


async def test_a_leadership_cancelled_as_its_etcd_call_answers_ends() -> None:
    calls: list[str] = []
    grant: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    stubs = EtcdStubs(kv=_KV(calls), lease=_Lease(calls, grant), watch=None)
    leadership = Leadership(endpoints=["127.0.0.1:2379"], me=LeaderInfo(id="m1", control=""),
                            stubs_for=lambda endpoint: stubs)
    running = asyncio.create_task(leadership.run())
    await eventually_async(lambda: calls == ["grant"], timeout=5, what="the lease asked for")
    # The answer and the cancellation in one turn of the loop: the cancellation wins.
    grant.set_result(rpc.LeaseGrantResponse(ID=7, TTL=3))
    running.cancel()
    done, _ = await asyncio.wait({running}, timeout=3)
    try:
        assert done, f"the cancelled leadership went on: it called {calls}"
        assert running.cancelled()
        assert "txn" not in calls and not leadership.is_leader
    finally:
        running.cancel()
