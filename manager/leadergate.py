"""What a manager that does not lead answers (managers sharing an etcd store; see leadership.py).

A follower serves every read of the Control API from its store's cache (lists, gets, events,
plans). What needs the leader it refuses with UNAVAILABLE and, when it knows the leader, the
leader's address in the trailing metadata (podium.rules.managers: `podium-leader`, and
`podium-leader-join` on the join port); the CLI, the client library and the agents go there by
themselves. That is: every write, GetLoad and Logs (the load figures and the container output
come over the agents' sessions, which only the leader holds), the agents' sessions, certificate
renewals and joins.

Why refuse rather than forward: a forwarded write would reach the leader as the follower's own
call, so the leader would have to trust the follower's word for who the caller is and what role
it has; refused, the caller's own certificate reaches the leader. It costs a client one extra
round trip after each change of leader, and nothing in steady state.

`DispatcherFront` is the Dispatcher service the gRPC server holds for the manager's whole life:
it hands each call to the current term's Dispatcher (manager.py makes one each time this manager
becomes the leader), and stands in for it between terms.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc

from podium.manager.requestguard import Refused
from podium.rules import managers
from podium.v1 import dispatcher, dispatcher_grpc

if TYPE_CHECKING:
    from podium.manager.dispatcher import Dispatcher, LogStream
    from podium.manager.leadership import Leadership

_CONTROL = "/podium.v1.Control/"
LEADER_ONLY = frozenset({
    *(_CONTROL + name for name in (
        "CreateService", "UpdateService", "RollbackService", "PromoteService", "ScaleService",
        "RemoveService", "UpdateNode", "CreateSecret", "RemoveSecret", "RotateSecretsKey",
        "RemoveNode", "AddUser", "RemoveUser", "GetJoinToken", "GetLoad", "Logs")),
    "/podium.v1.Dispatcher/Session",
    "/podium.v1.Dispatcher/RenewCertificate",
    "/podium.v1.Join/JoinCluster",
})


class LeaderGate:
    """admit(method, context) for the RequestGuard: Refused(UNAVAILABLE) with the leader's
    address for what only the leader serves, while this manager does not lead. Without a
    leadership (one manager on SQLite) it admits everything."""

    def __init__(self, leadership: Leadership | None) -> None:
        self._leadership = leadership

    @property
    def leading(self) -> bool:
        return self._leadership is None or self._leadership.is_leader

    def admit(self, method: str, context: Any) -> None:
        if method not in LEADER_ONLY or self.leading:
            return
        raise self.refusal(context)

    def refusal(self, context: Any) -> Refused:
        """The refusal, with the hint set on `context`'s trailing metadata."""
        leader = self._leadership.leader if self._leadership is not None else None
        if leader is None or (self._leadership is not None
                              and leader.id == self._leadership.me.id):
            return Refused(grpc.StatusCode.UNAVAILABLE,
                           "this manager does not lead and no leader is known at the moment "
                           "(an election is under way): try again shortly, or another manager")
        context.set_trailing_metadata(((managers.LEADER_KEY, leader.control),
                                       (managers.LEADER_JOIN_KEY, leader.join)))
        return Refused(grpc.StatusCode.UNAVAILABLE,
                       f"this manager does not lead: the leader is {leader.id} at "
                       f"{leader.control}")


class DispatcherFront(dispatcher_grpc.DispatcherServicer):  # type: ignore[misc]
    """The current term's Dispatcher (None between terms), behind one stable servicer."""

    def __init__(self, gate: LeaderGate) -> None:
        self._gate = gate
        self.current: Dispatcher | None = None

    async def _refuse(self, context: Any) -> None:
        refused = self._gate.refusal(context)
        await context.abort(refused.code, refused.details)

    async def Session(self, request_iterator: AsyncIterator[dispatcher.AgentMessage],
                      context: Any) -> None:
        current = self.current
        if current is None:
            await self._refuse(context)
            return
        await current.Session(request_iterator, context)

    async def RenewCertificate(self, request: dispatcher.RenewCertificateRequest,
                               context: Any) -> dispatcher.NodeCertificate:
        current = self.current
        if current is None:
            await self._refuse(context)
            raise AssertionError("unreachable")
        return await current.RenewCertificate(request, context)

    # What the Control API's Logs and the metrics read.

    @property
    def sessions_open(self) -> int:
        return self.current.sessions_open if self.current is not None else 0

    def open_logs(self, node_id: str, task_ids: list[str], *, follow: bool, since_ns: int = 0,
                  tail: int = 0) -> LogStream | None:
        if self.current is None:
            return None
        return self.current.open_logs(node_id, task_ids, follow=follow, since_ns=since_ns,
                                      tail=tail)

    def close_logs(self, stream: LogStream) -> None:
        if self.current is not None:
            self.current.close_logs(stream)
