"""Dispatcher: the agents' sessions.

Each agent holds one bidirectional stream. On Register the dispatcher records
the node as ready, sends the heartbeat period and the complete set of tasks
assigned to the node (with the secrets those tasks use, and only those), then
forwards changes to that set as they commit; a secret travels once per session,
with the first task that uses it. It
applies the agents' status reports, which may only move a task forward, and
feeds the node monitor (nodemonitor.py decides; this module acts): sessions
opening, ending (with the agent's "leaving to restart" when it said so) or
running late, and the results of the host probes (hostprobe.py) it asks for.
Heartbeats say whether the node's container engine answers; the node records it
(NodeStatus.engine_unresponsive), which takes it out of placement without
touching its tasks.

Nothing an agent sends ends its session by surprise: a message that cannot be
applied is logged with a traceback and skipped, and the session's end is logged
with its cause.

Invariant: a session's complete set is taken from the store in the same
synchronous step that registers the session for forwarding, so no change can
fall between the snapshot and the stream of changes.

Each session's outbox is bounded (`outbox_limit` messages): an agent that reads
so slowly that more wait is cut off (RESOURCE_EXHAUSTED) and what waited is
dropped; it reconnects and gets the complete set, which replaces every change it
missed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import itertools
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc

from podium.manager import hostprobe, ids, secrets
from podium.manager.endpoints import EndpointTables, node_address
from podium.manager.loadbook import LoadBook
from podium.manager.nodemonitor import (
    AGENT_DOWN,
    DEFAULT_PROBE_TIMEOUT_S,
    DEFAULT_RESTART_GRACE_S,
    Decisions,
    NodeMonitor,
    Transition,
)
from podium.manager.requestguard import Refused
from podium.manager.store import Change, Store, WriteTx, current_actor
from podium.rules import network
from podium.v1 import dispatcher, dispatcher_grpc, objects

# Beyond this many heartbeats (or load reports) a second from all agents together, the period
# grows: 5,000 agents beat every 3.5 s, and a silent host is found within 1.2 periods and a probe.
DEFAULT_HEARTBEATS_PER_SECOND = 1500.0
PERIOD_STEP_S = 0.5

if TYPE_CHECKING:
    from podium.manager.security import Authority

log = logging.getLogger(__name__)

READY = objects.NodeStatus.STATE_READY
DOWN = objects.NodeStatus.STATE_DOWN
# Messages waiting for one agent. Each forwarding pass adds at most one assignments and one
# endpoints message per session, so this is hundreds of passes the agent did not read.
OUTBOX_LIMIT = 1000
STOPPED_LEADING = "this manager stopped leading: reconnect to the new leader"
STOPPING = "this manager is stopping"
# How long a session whose agent stopped sending waits for a write in flight before it ends.
WRITE_DRAIN_S = 1.0
# Log chunks waiting for one `podium logs` caller: past this it is cut off (it reads too slowly).
LOG_BACKLOG = 256
# Task updates written in one transaction at most when the status reports of many sessions are
# written together (a report larger than this still goes whole, on its own).
STATUS_BATCH = 2000

StatusUpdates = list[dispatcher.StatusReport.Update]


@dataclass(slots=True, eq=False)
class LogStream:
    """Container output asked of one node (open_logs()): its LogChunks in `chunks`, ended by
    one whose `end` is set for each task (the node's session ending ends them all)."""

    request_id: int
    node_id: str
    task_ids: frozenset[str]
    chunks: asyncio.Queue[dispatcher.LogChunk] = field(default_factory=asyncio.Queue)
    ended: set[str] = field(default_factory=set)

    def put(self, chunk: dispatcher.LogChunk) -> bool:
        """Takes a chunk; False once the stream is complete (every task ended)."""
        if chunk.task_id not in self.task_ids or chunk.task_id in self.ended:
            return True
        if chunk.end:
            self.ended.add(chunk.task_id)
        self.chunks.put_nowait(chunk)
        return len(self.ended) < len(self.task_ids)

    def end_all(self, error: str) -> None:
        for task_id in sorted(self.task_ids - self.ended):
            self.put(dispatcher.LogChunk(request_id=self.request_id, task_id=task_id, end=True,
                                         error=error))


@dataclass(slots=True, eq=False)
class _Session:
    node_id: str
    limit: int = OUTBOX_LIMIT
    outbox: asyncio.Queue[dispatcher.ManagerMessage | None] = field(default_factory=asyncio.Queue)
    # Desired state last sent per task: only changes the agent acts on travel.
    sent: dict[str, int] = field(default_factory=dict)
    # Ids of the secrets (with data) sent in this session: each travels once per session.
    secrets_sent: set[str] = field(default_factory=set)
    # Set when the monitor closes a silent session: the node's new state is decided already.
    silenced: bool = False
    # Set when the agent fell `limit` messages behind: the session ends with RESOURCE_EXHAUSTED.
    overflowed: bool = False
    # Set by close(): the session ends even while a write waits for the agent to read.
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    # The agent's reason, when it said it is leaving to restart.
    leaving: str = ""
    # What the last heartbeat said of the engine (None: none yet in this session).
    engine: tuple[bool, str] | None = None
    # When the last heartbeat arrived (time.monotonic; None: none yet in this session).
    heartbeat_at: float | None = None

    def send(self, message: dispatcher.ManagerMessage) -> None:
        if self.overflowed:
            return
        if self.outbox.qsize() >= self.limit:
            self.overflowed = True
            while not self.outbox.empty():  # freed now, not when the agent reads again
                self.outbox.get_nowait()
            self.close()
        else:
            self.outbox.put_nowait(message)

    def close(self) -> None:
        self.outbox.put_nowait(None)
        self.closing.set()


class Dispatcher(dispatcher_grpc.DispatcherServicer):
    def __init__(
        self,
        *,
        store: Store,
        load: LoadBook,
        heartbeat_period: float = 1.0,
        load_period: float = 1.0,
        heartbeats_per_second: float = DEFAULT_HEARTBEATS_PER_SECOND,
        virtual_ip_range: str = network.DEFAULT_RANGE,
        missed_heartbeats: int = 3,
        down_grace: float = 1.0,
        startup_grace: float = 10.0,
        restart_grace: float = DEFAULT_RESTART_GRACE_S,
        probe_timeout: float = DEFAULT_PROBE_TIMEOUT_S,
        outbox_limit: int = OUTBOX_LIMIT,
        authority: Authority | None = None,
        on_heartbeat: Callable[[float], None] | None = None,
        may_dispatch: Callable[[], bool] = lambda: True,
    ) -> None:
        """`authority`: the manager's certificates (None: a plaintext manager, for in-process
        tests: any agent may then register as any node). `on_heartbeat`: called with the
        seconds between each two heartbeats of a session (the manager's metrics).
        `heartbeats_per_second`: the most the agents send together; beyond it, every period
        grows with the number of sessions (`scaled_period`); 0: the periods never change.
        `may_dispatch()`: checked before each message goes to an agent (a leader whose lease
        may have ended sends nothing more: leadership.py); close_all() ends every session."""
        self._may_dispatch = may_dispatch
        self._closed = False
        self._closed_why = STOPPED_LEADING
        self._on_heartbeat = on_heartbeat
        self._authority = authority
        self._store = store
        self._outbox_limit = outbox_limit
        self._base_period = self._period = heartbeat_period
        self._base_load_period = self._load_period = load_period
        self._per_second = heartbeats_per_second
        self._period_changed = asyncio.Event()
        self._virtual_ip_range = virtual_ip_range
        self._load = load
        # Fine-grained: a down grace of 1 s should not become 1.25 s.
        self._tick = min(heartbeat_period, 1.0) / 20
        self._monitor = NodeMonitor(
            period=heartbeat_period, missed=missed_heartbeats, down_grace=down_grace,
            startup_grace=startup_grace, restart_grace=restart_grace,
            # Twice the tick: the loop's ordinary jitter is no stall.
            tick=2 * self._tick, now=time.monotonic(),
        )
        self._probe_timeout = probe_timeout
        self._probes: dict[str, asyncio.Task[None]] = {}  # node id -> its probe in flight
        self._sessions: dict[str, _Session] = {}
        self._expected = 0  # nodes not down in the store as this term began, for a while
        self._expected_until = 0.0
        self._routes = EndpointTables()
        self._log_streams: dict[int, LogStream] = {}
        self._log_ids = itertools.count(1)
        # Status reports waiting to be written, and the task writing them (while there are).
        self._reports: collections.deque[tuple[str, StatusUpdates, asyncio.Future[None]]] = (
            collections.deque())
        self._reporter: asyncio.Task[None] | None = None

    @property
    def sessions_open(self) -> int:
        return len(self._sessions)

    def close_all(self, why: str = STOPPED_LEADING) -> None:
        """Ends every session and takes no new one, writing nothing more: this manager stopped
        leading (the next leader's dispatcher decides what the nodes' states are), or it is
        stopping (its successor's startup grace does). `why`: what the agents are told."""
        self._closed = True
        self._closed_why = why
        for session in list(self._sessions.values()):
            session.silenced = True
            session.close()

    # -- container output (Control.Logs) ----------------------------------------

    @property
    def log_streams(self) -> int:
        """Requests for container output still open."""
        return len(self._log_streams)

    def open_logs(self, node_id: str, task_ids: list[str], *, follow: bool, since_ns: int = 0,
                  tail: int = 0) -> LogStream | None:
        """Asks a node for its tasks' output; None when the node has no session."""
        session = self._sessions.get(node_id)
        if session is None or session.closing.is_set():
            return None
        stream = LogStream(next(self._log_ids), node_id, frozenset(task_ids))
        self._log_streams[stream.request_id] = stream
        request = dispatcher.LogRequest(request_id=stream.request_id, task_ids=task_ids,
                                        follow=follow, tail=tail)
        if since_ns > 0:
            request.since.FromNanoseconds(since_ns)
        session.send(dispatcher.ManagerMessage(logs=request))
        return stream

    def close_logs(self, stream: LogStream) -> None:
        """The caller is done: the node stops sending (if it still does)."""
        if self._log_streams.pop(stream.request_id, None) is None:
            return
        session = self._sessions.get(stream.node_id)
        if session is not None and len(stream.ended) < len(stream.task_ids):
            session.send(dispatcher.ManagerMessage(
                logs_cancel=dispatcher.LogCancel(request_id=stream.request_id)))

    def _log_chunk(self, session: _Session, chunk: dispatcher.LogChunk) -> None:
        stream = self._log_streams.get(chunk.request_id)
        if stream is None or stream.node_id != session.node_id:
            return  # closed meanwhile (or not this node's to answer)
        if stream.chunks.qsize() >= LOG_BACKLOG:
            stream.end_all("the reader fell behind the output: try again, or with --tail")
            self.close_logs(stream)
            return
        if not stream.put(chunk):
            del self._log_streams[chunk.request_id]  # complete: nothing to cancel

    def _end_logs_of(self, node_id: str) -> None:
        for request_id, stream in list(self._log_streams.items()):
            if stream.node_id == node_id:
                del self._log_streams[request_id]
                stream.end_all(f"the session of node {node_id} ended")

    async def run(self) -> None:
        view = self._store.view()
        self._routes.changed(view, [s.id for s in view.services()])
        # Until every node the store knows that is not down has had the startup grace and a
        # restart grace to come back, the periods count them all: after a restart its agents
        # reconnect all at once, and were they told the 1 s period of the few sessions open
        # so far, thousands would heartbeat at several times the rate the manager budgets
        # for, just when it registers the rest.
        self._expected = sum(n.status.state != DOWN for n in view.nodes())
        self._monitor.expect(self._expected)
        self._expected_until = (time.monotonic() + self._monitor.startup_grace
                                + self._monitor.restart_grace)
        self._rescale()
        try:
            await asyncio.gather(self._forward_changes(), self._watch_nodes(),
                                 self._announce_periods())
        finally:
            probes = list(self._probes.values())
            for job in probes:
                job.cancel()
            for job in probes:
                with contextlib.suppress(asyncio.CancelledError):
                    await job

    # -- agent -> manager ------------------------------------------------------

    async def RenewCertificate(
        self, request: dispatcher.RenewCertificateRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> dispatcher.NodeCertificate:
        caller = current_actor()
        if self._authority is None or not caller.startswith("node:"):
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                "certificates are renewed by nodes of a manager with TLS")
            raise AssertionError("unreachable")
        try:
            return await self._authority.renew(caller.removeprefix("node:"), request.csr)
        except Refused as refused:
            await context.abort(refused.code, refused.details)
            raise

    async def Session(
        self,
        request_iterator: AsyncIterator[dispatcher.AgentMessage],
        context: grpc.aio.ServicerContext[dispatcher.AgentMessage, dispatcher.ManagerMessage],
    ) -> None:
        self._monitor.arriving(time.monotonic())
        first = await anext(aiter(request_iterator), None)
        if self._closed:
            await context.abort(grpc.StatusCode.UNAVAILABLE, self._closed_why)
            return
        if first is None or not first.HasField("register"):
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, "first message must be register"
            )
            return
        reg = first.register
        error = _check_register(reg)
        if error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, error)
            return
        caller = current_actor()  # the certificate's node, which admission recorded
        if self._authority is not None and caller != f"node:{reg.node_id}":
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"this certificate is {caller}'s: it cannot open a session for node "
                f"{reg.node_id}")
            return
        try:
            await self._store.update(lambda tx: _register(tx, reg, context.peer()))
            self._monitor.opened(reg.node_id, time.monotonic())
        except NameInUseError as err:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(err))
            return
        if self._closed:
            # This term ended while the registration was being written: close_all() has run
            # and would never end this session, whose heartbeats would then feed a dead term's
            # node monitor while the next term's marks the node down.
            await context.abort(grpc.StatusCode.UNAVAILABLE, self._closed_why)
            return
        session = self._open(reg.node_id)
        log.info(
            "node %s (%s) connected from %s", reg.description.name, reg.node_id, context.peer()
        )
        reader = asyncio.create_task(self._read(session, request_iterator),
                                     name=f"read {reg.node_id}")
        closing = asyncio.ensure_future(session.closing.wait())
        jobs: list[asyncio.Future[Any]] = [reader, closing]
        try:
            while True:
                get = asyncio.ensure_future(session.outbox.get())
                jobs.append(get)
                await asyncio.wait({get, reader}, return_when=asyncio.FIRST_COMPLETED)
                if not get.done():
                    break
                message = get.result()
                # may_dispatch() is the leadership's: true again once a later term starts.
                if message is None or self._closed or not self._may_dispatch():
                    break
                # Not a generator's yield: a write that flow control holds (the agent reads
                # nothing) must not hold the session open once it is closed.
                write = asyncio.ensure_future(context.write(message))
                jobs.append(write)
                await asyncio.wait({write, reader, closing}, return_when=asyncio.FIRST_COMPLETED)
                if not write.done() and reader.done() and not closing.done():
                    # The agent stopped sending (or sent what was refused): let the write in
                    # flight finish, briefly, so that the call can still end with a status;
                    # one cancelled mid-write leaves the client waiting for its deadline.
                    await asyncio.wait({write, closing}, timeout=WRITE_DRAIN_S)
                if not write.done():
                    break
                write.result()
                jobs = [reader, closing]
            if self._closed or not self._may_dispatch():
                await context.abort(grpc.StatusCode.UNAVAILABLE, self._closed_why)
            if session.overflowed:
                log.warning("node %s fell %d messages behind: session closed",
                            reg.description.name, session.limit)
                await context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"this agent fell more than {session.limit} messages behind: "
                    "reconnect for the complete set",
                )
        finally:
            # Cancelled mid-wait (the server stopping), pending futures would outlive the call.
            for job in jobs[1:]:
                job.cancel()
            reader.cancel()
            try:
                await reader
            except asyncio.CancelledError:
                pass
            except grpc.aio.AioRpcError as err:  # the stream broke: the agent or its link went
                log.info("node %s: session stream ended: %s", session.node_id, err.code().name)
            except grpc.aio.AbortError:  # this side ended the call (an agent that fell behind)
                log.info("node %s: session aborted", session.node_id)
            except Exception:
                log.exception("node %s: session reader failed", session.node_id)
            if self._sessions.get(session.node_id) is session:
                del self._sessions[session.node_id]
                self._rescale()
                self._load.forget_node(session.node_id)
                self._end_logs_of(session.node_id)
                if not session.silenced:
                    await self._act(self._monitor.closed(
                        session.node_id, time.monotonic(), restarting=session.leaving))

    def _open(self, node_id: str) -> _Session:
        old = self._sessions.get(node_id)
        if old is not None:
            old.close()
            self._end_logs_of(node_id)
        session = _Session(node_id, limit=self._outbox_limit)
        self._sessions[node_id] = session
        self._rescale()
        session.send(dispatcher.ManagerMessage(session=self._session_info(node_id)))
        full = dispatcher.Assignments(type=dispatcher.Assignments.TYPE_COMPLETE)
        view = self._store.view()
        tasks = view.tasks_of_node(node_id)
        full.tasks.extend(tasks)
        for task in tasks:
            session.sent[task.id] = task.desired_state
        # Only the secrets this node's tasks use: a node never holds another node's secrets.
        used = secrets.secrets_of(view, tasks)
        full.secrets.extend(used.values())
        session.secrets_sent.update(used)
        session.send(dispatcher.ManagerMessage(assignments=full))
        session.send(dispatcher.ManagerMessage(endpoints=self._routes.complete()))
        return session

    def _session_info(self, node_id: str) -> dispatcher.SessionInfo:
        info = dispatcher.SessionInfo(node_id=node_id)
        info.heartbeat_period.FromNanoseconds(int(self._period * 1e9))
        info.load_period.FromNanoseconds(int(self._load_period * 1e9))
        info.restart_grace.FromNanoseconds(int(self._monitor.restart_grace * 1e9))
        info.virtual_ip_range = self._virtual_ip_range
        info.resolver_addr = network.resolver_address(self._virtual_ip_range)
        return info

    @property
    def heartbeat_period(self) -> float:
        """The period the agents are told now."""
        return self._period

    def _rescale(self) -> None:
        """The heartbeat and load periods for the sessions open now. They grow at once when
        sessions are added, and shrink only once there are 10 % fewer sessions than the
        longer period needs: a count that hovers at a step does not make every agent
        change its period back and forth."""
        n = max(len(self._sessions), self._expected)
        up = scaled_period(self._base_period, n, self._per_second)
        down = scaled_period(self._base_period, math.ceil(n * 1.1), self._per_second)
        period = up if up > self._period else down if down < self._period else self._period
        if period == self._period:
            return
        log.info("heartbeat period %g s for %d sessions (was %g s)", period, n, self._period)
        self._period = period
        self._load_period = self._base_load_period * period / self._base_period
        self._monitor.set_period(period, time.monotonic())
        self._period_changed.set()

    async def _announce_periods(self) -> None:
        """Tells every open session a new period, at most once a second (a reconnect storm
        changes it several times in a few seconds)."""
        while True:
            await self._period_changed.wait()
            self._period_changed.clear()
            for node_id, session in list(self._sessions.items()):
                session.send(dispatcher.ManagerMessage(session=self._session_info(node_id)))
            await asyncio.sleep(1.0)

    async def _read(
        self, session: _Session, requests: AsyncIterator[dispatcher.AgentMessage]
    ) -> None:
        async for message in requests:
            self._monitor.heard(session.node_id, time.monotonic())
            try:
                await self._handle(session, message)
            except Exception:
                # A fault in applying one message must not end the session (the node would be
                # marked down and its tasks replaced); the agent resends its statuses on every
                # new session and its next heartbeat repeats the engine's state.
                log.exception("node %s: could not apply its %s message; skipped",
                              session.node_id, message.WhichOneof("message"))

    async def _handle(self, session: _Session, message: dispatcher.AgentMessage) -> None:
        if message.HasField("leaving"):
            if message.leaving.restarting:
                session.leaving = message.leaving.reason or "said so"
            log.info("node %s is leaving (%s)", session.node_id,
                     session.leaving or "not restarting")
        if message.HasField("load"):
            self._load.record(session.node_id, message.load)
        if message.HasField("logs"):
            self._log_chunk(session, message.logs)
        if message.HasField("status") and message.status.updates:
            await self._apply_statuses(session.node_id, list(message.status.updates))
        if message.HasField("heartbeat") or message.HasField("load"):
            # An agent's load reports stand in for its heartbeats when they go as often.
            now = time.monotonic()
            if session.heartbeat_at is not None and self._on_heartbeat is not None:
                self._on_heartbeat(now - session.heartbeat_at)
            session.heartbeat_at = now
        if message.HasField("heartbeat"):
            engine = (message.heartbeat.engine_unresponsive, message.heartbeat.engine_error)
            if engine != session.engine:
                await self._store.update(functools.partial(
                    _set_engine, node_id=session.node_id, unresponsive=engine[0], error=engine[1]))
                session.engine = engine

    async def _apply_statuses(self, node_id: str, updates: StatusUpdates) -> None:
        """Applies a report, with those of other sessions that came in the same loop turns, in
        one transaction (group commit): a commit costs about as much as writing its rows, and a
        burst of 10,000 new tasks brings tens of thousands of reports. Returns once it is
        written; a session's next message is read only then, so its reports stay in order."""
        written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reports.append((node_id, updates, written))
        if self._reporter is None or self._reporter.done():
            self._reporter = asyncio.get_running_loop().create_task(
                self._write_reports(), name="dispatcher-statuses")
        await written

    async def _write_reports(self) -> None:
        batch: list[tuple[str, StatusUpdates, asyncio.Future[None]]] = []
        try:
            while self._reports:
                batch = []
                await self._write_batch(batch)
        except asyncio.CancelledError:  # the loop is ending: no session waits for good
            for _, _, written in [*batch, *self._reports]:
                written.cancel()
            self._reports.clear()
            raise

    async def _write_batch(self, batch: list[tuple[str, StatusUpdates, asyncio.Future[None]]]
                           ) -> None:
        """Takes the next batch of reports into `batch` and writes it."""
        await asyncio.sleep(0)  # the reports read in this loop turn join the batch
        size = 0
        while self._reports and (not batch or size + len(self._reports[0][1]) <= STATUS_BATCH):
            size += len(self._reports[0][1])
            batch.append(self._reports.popleft())
        try:
            await self._store.update(functools.partial(
                _apply_reports, reports=[(node_id, updates) for node_id, updates, _ in batch]))
        except Exception:
            nodes = sorted({node_id for node_id, _, _ in batch})
            log.exception("could not apply the status reports of node(s) %s%s together; "
                          "applying each on its own", ", ".join(nodes[:10]),
                          f" and {len(nodes) - 10} more" if len(nodes) > 10 else "")
            for node_id, updates, written in batch:
                try:
                    await self._apply_report(node_id, updates)
                except Exception as error:
                    if not written.done():
                        written.set_exception(error)
        for _, _, written in batch:
            if not written.done():
                written.set_result(None)

    async def _apply_report(self, node_id: str, updates: StatusUpdates) -> None:
        """Applies a report in one transaction; if that fails, each update on its own, so that a
        fault in one task's update (logged) loses no other task's status."""
        try:
            await self._store.update(
                functools.partial(_apply_status, node_id=node_id, updates=updates))
            return
        except Exception:
            if len(updates) == 1:
                raise
            log.exception("node %s: could not apply a status report of %d tasks; "
                          "applying them one by one", node_id, len(updates))
        for update in updates:
            try:
                await self._store.update(
                    functools.partial(_apply_status, node_id=node_id, updates=[update]))
            except Exception:
                log.exception("node %s: could not apply the status of task %s; skipped",
                              node_id, update.task_id)

    async def _act(self, decisions: Decisions) -> None:
        if self._closed:
            return
        for node_id in decisions.close:
            session = self._sessions.get(node_id)
            if session is not None:
                session.silenced = True
                session.close()
        for node_id in decisions.probe:
            self._start_probe(node_id)
        await self._apply(decisions.transitions)

    def _start_probe(self, node_id: str) -> None:
        if node_id in self._probes:
            return  # one at a time; its result covers this request too
        view = self._store.view()
        node = view.get_node(node_id)
        addr = node_address(node) if node is not None else ""
        # TCP ports the engine published for its running tasks: known to be open.
        published = [b.published_port for t in view.tasks_of_node(node_id)
                     if t.status.state == objects.TASK_STATE_RUNNING for b in t.status.ports
                     if b.published_port and ":" not in b.host_ip
                     and b.protocol == objects.PortConfig.PROTOCOL_TCP]
        self._probes[node_id] = asyncio.create_task(
            self._probe(node_id, addr, published), name=f"probe {node_id}")

    async def _probe(self, node_id: str, addr: str, ports: list[int]) -> None:
        try:
            result = await hostprobe.probe(addr, ports, answer_within=self._probe_timeout)
        finally:
            del self._probes[node_id]
        log.info("probe of node %s: %s", node_id, result.detail)
        await self._act(self._monitor.probed(node_id, result.host, result.serving,
                                             result.detail, time.monotonic()))

    async def _apply(self, transitions: list[Transition]) -> None:
        wall_offset = time.time() - time.monotonic()

        def apply(tx: WriteTx) -> None:
            for change in transitions:
                node = tx.get_node(change.node_id)
                if node is None or (node.status.state == change.state
                                    and change.state != AGENT_DOWN):
                    continue
                _set_node_state(node, change.state, change.reason)
                if change.state == AGENT_DOWN:
                    node.status.held_until.CopyFrom(
                        ids.timestamp(change.held_until + wall_offset))
                tx.update(node)
                log.warning("node %s is %s: %s", node.description.name,
                            objects.NodeStatus.State.Name(change.state)[6:].lower(),
                            change.reason)

        if transitions:
            await self._store.update(apply)

    # -- manager -> agent ------------------------------------------------------

    async def _forward_changes(self) -> None:
        watch = self._store.watch()
        try:
            while True:
                changes = [await watch.get()]
                while (more := watch.get_nowait()) is not None:
                    changes.append(more)
                batches: dict[str, dispatcher.Assignments] = {}
                for change in changes:
                    task = change.obj
                    if not isinstance(task, objects.Task) or not task.node_id:
                        continue
                    session = self._sessions.get(task.node_id)
                    if session is None:
                        continue
                    batch = batches.get(task.node_id)
                    if batch is None:
                        batch = batches[task.node_id] = dispatcher.Assignments(
                            type=dispatcher.Assignments.TYPE_INCREMENTAL
                        )
                    if change.action == "delete":
                        if session.sent.pop(task.id, None) is not None:
                            batch.removed.append(task.id)
                    elif session.sent.get(task.id) != task.desired_state:
                        session.sent[task.id] = task.desired_state
                        batch.tasks.append(task)
                view = self._store.view()
                for node_id, batch in batches.items():
                    session = self._sessions.get(node_id)
                    if session is not None and (batch.tasks or batch.removed):
                        used = secrets.secrets_of(view, batch.tasks)
                        for secret_id, secret in used.items():
                            if secret_id not in session.secrets_sent:
                                session.secrets_sent.add(secret_id)
                                batch.secrets.append(secret)
                        session.send(dispatcher.ManagerMessage(assignments=batch))
                self._publish_routes(changes)
        finally:
            watch.close()

    def _publish_routes(self, changes: list[Change]) -> None:
        """Pushes the routing tables the changes altered to every agent."""
        view = self._store.view()
        services: set[str] = set()
        for change in changes:
            services |= self._routes.affected(change, view)
        delta = self._routes.changed(view, services)
        if delta is not None:
            message = dispatcher.ManagerMessage(endpoints=delta)
            for session in self._sessions.values():
                session.send(message)

    async def _watch_nodes(self) -> None:
        def nodes() -> list[tuple[str, int]]:
            return [(n.id, n.status.state) for n in self._store.view().nodes()]

        while True:
            await asyncio.sleep(self._tick)
            now = time.monotonic()
            await self._act(self._monitor.tick(now, nodes))
            if self._expected and now >= self._expected_until:
                self._expected = 0
                self._rescale()  # the sessions open now count, not the nodes expected


def scaled_period(base: float, sessions: int, per_second: float) -> float:
    """The heartbeat period for `sessions` agents: `base`, or longer so that together they send
    at most `per_second` heartbeats a second, rounded up to PERIOD_STEP_S. 0: always `base`."""
    if per_second <= 0:
        return base
    wanted = sessions / per_second
    if wanted <= base:
        return base
    return math.ceil(wanted / PERIOD_STEP_S) * PERIOD_STEP_S


class NameInUseError(Exception):
    pass


def _check_register(reg: dispatcher.Register) -> str:
    if not reg.node_id:
        return "register.node_id is empty"
    if not reg.description.name:
        return "register.description.name is empty"
    return ""


def _set_node_state(node: objects.Node, state: int, message: str) -> None:
    node.status.state = state  # type: ignore[assignment]
    node.status.message = message
    node.status.timestamp.CopyFrom(ids.timestamp())
    node.status.ClearField("held_until")


def _set_engine(tx: WriteTx, node_id: str, unresponsive: bool, error: str) -> None:
    node = tx.get_node(node_id)
    if node is None:
        return
    status = node.status
    if (status.engine_unresponsive, status.engine_error) == (unresponsive, error):
        return
    if unresponsive != status.engine_unresponsive:
        name = node.description.name
        if unresponsive:
            log.warning("node %s: engine not answering (%s); it takes no new tasks", name, error)
        else:
            log.warning("node %s: engine answering again", name)
        status.message = f"engine not answering: {error}" if unresponsive else "engine answering"
        status.timestamp.CopyFrom(ids.timestamp())
    status.engine_unresponsive = unresponsive
    status.engine_error = error
    tx.update(node)


def _register(tx: WriteTx, reg: dispatcher.Register, peer: str) -> None:
    name = reg.description.name
    holder = tx.node_by_name(name)
    if holder is not None and holder.id != reg.node_id:
        if holder.status.state == READY:
            raise NameInUseError(f"node name {name!r} is in use by node {holder.id}")
        tx.delete(holder)  # a node of that name that is gone: the new one replaces it
    node = tx.get_node(reg.node_id)
    if node is None:
        node = objects.Node(id=reg.node_id)
        node.description.CopyFrom(reg.description)
        _set_node_state(node, READY, "registered")
        node.status.addr = peer
        tx.create(node)
        return
    node.description.CopyFrom(reg.description)
    _set_node_state(node, READY, "session opened")
    node.status.addr = peer
    tx.update(node)


def _apply_reports(tx: WriteTx, reports: list[tuple[str, StatusUpdates]]) -> None:
    for node_id, updates in reports:
        _apply_status(tx, node_id, updates)


def _apply_status(tx: WriteTx, node_id: str, updates: StatusUpdates) -> None:
    for update in updates:
        task = tx.get_task(update.task_id)
        if task is None or task.node_id != node_id:
            continue  # deleted, or moved away: the agent learns from its assignments
        new = update.status
        if new.state < task.status.state:
            continue  # states only move forward
        if new == task.status:
            continue
        task.status.CopyFrom(new)
        tx.update(task)
