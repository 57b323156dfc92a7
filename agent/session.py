"""Session: the agent's one stream to the manager's Dispatcher.

Registers, then concurrently sends heartbeats (at the period the manager
sets; while load reports go at least as often, they stand in for heartbeats, which are then
sent only at the session's start and when what they say changes) and status reports, and hands
assignments to the worker. When the stream
breaks it reconnects with jittered exponential backoff (0.1 s doubling to 5 s)
so that a manager restart is not met by every agent at the same instant. A registration the manager
does not answer within REGISTER_TIMEOUT_S is given up and tried again.

Several managers (`manager` = "HOST:PORT,HOST:PORT,..."; managers on etcd elect a leader, and
only the leader holds sessions): a session refused with UNAVAILABLE by a manager that names the
leader (podium.rules.managers) goes to the leader at once; one that breaks or cannot open goes
to the next manager, and each full round of them waits a jittered delay of up to 1 s.

What waits to be sent is bounded (OUTBOX_LIMIT messages): when the manager stops
reading the stream, gRPC's flow control holds the sender and the outbox would
grow by a heartbeat and a load report every period. Once it is full the session
is closed and opened again: the reporter resends every task's latest status on
the new session, so nothing that matters is lost with what was dropped.

The read loop never waits on the engine or on the mesh: it only hands each
assignment and routing message, in order, to a synchronous callback whose owner
queues it for a consumer of its own (the worker, the agent's mesh applier). So a
wedged engine cannot stop the session from reading, and what the heartbeat says
about the engine is always current (heartbeat_now() sends one at once).

`leave()` ends the session on purpose (the agent is stopping: a restart, an upgrade): it sends
Leaving(restarting) as the last message, half-closes the stream and waits briefly for the
manager to end it, so the manager holds the node's tasks for its restart grace instead of
treating the node as failed. No session is opened after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc

from podium.agent.logs import LogService
from podium.agent.status import StatusReporter
from podium.rules import awaiting, managers
from podium.rules.credentials import CHANNEL_OPTIONS as TLS_OPTIONS
from podium.v1 import dispatcher, dispatcher_grpc, objects

log = logging.getLogger(__name__)

# Heartbeats, load reports and status batches waiting: minutes of a manager not reading.
OUTBOX_LIMIT = 1000
BACKOFF_BASE_S = 0.1
MAX_MESSAGE_BYTES = 256 << 20
BACKOFF_MAX_S = 5.0
# How long leave() waits for the manager to take note and end the session.
LEAVE_TIMEOUT_S = 2.0
# How long a session that has not registered yet waits for the manager's answer before trying
# again: longer than a manager takes to admit every agent of a 5,000-host reconnect storm.
REGISTER_TIMEOUT_S = 60.0
# How long the tasks of an ended session get to end once cancelled.
CANCEL_WAIT_S = 5.0
CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2_000),
    # A node's complete set can outgrow gRPC's 4 MiB default (many tasks with large specs): a
    # session that cannot receive it could never open.
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]


class Outbox:
    """Messages to the manager, at most `limit`; one more marks it `full` and empties it."""

    def __init__(self, limit: int = OUTBOX_LIMIT) -> None:
        self._queue: asyncio.Queue[dispatcher.AgentMessage | None] = asyncio.Queue()
        self._limit = limit
        self.full = asyncio.Event()
        self._room = asyncio.Event()  # set while at most half the limit waits
        self._room.set()

    def put(self, message: dispatcher.AgentMessage) -> None:
        if self.full.is_set():
            return
        if self._queue.qsize() >= self._limit:
            while not self._queue.empty():
                self._queue.get_nowait()
            self.full.set()
        else:
            self._queue.put_nowait(message)

    async def put_when_room(self, message: dispatcher.AgentMessage) -> None:
        """put(), once at most half the limit waits: for bulk output (container logs), which
        must never fill the outbox and end the session."""
        while self._queue.qsize() >= self._limit // 2 and not self.full.is_set():
            self._room.clear()
            await self._room.wait()
        self.put(message)

    async def get(self) -> dispatcher.AgentMessage | None:
        """The next message, or None once closed."""
        message = await self._queue.get()
        if self._queue.qsize() < self._limit // 2:
            self._room.set()
        return message

    def close(self) -> None:
        """Ends the request stream: gRPC's task that consumes it would wait forever when the
        call ended from the manager's side (an abort), as cancel() does not stop it then."""
        self._queue.put_nowait(None)


def backoff(attempt: int) -> float:
    """Delay before reconnect attempt `attempt` (0-based), with +-50% jitter."""
    base = min(BACKOFF_BASE_S * 2**attempt, BACKOFF_MAX_S)
    return float(base * random.uniform(0.5, 1.5))


class Session:
    def __init__(
        self,
        *,
        manager: str,
        node_id: str,
        describe: Callable[[], Awaitable[objects.NodeDescription]],
        on_assignments: Callable[[dispatcher.Assignments], None],
        reporter: StatusReporter,
        load: Callable[[], dispatcher.LoadReport] | None = None,
        on_endpoints: Callable[[dispatcher.Endpoints], None] | None = None,
        heartbeat: Callable[[], dispatcher.Heartbeat] | None = None,
        outbox_limit: int = OUTBOX_LIMIT,
        on_info: Callable[[dispatcher.SessionInfo], None] | None = None,
        credentials: Callable[[], grpc.ChannelCredentials] | None = None,
        logs: LogService | None = None,
        on_state: Callable[[bool, str], None] | None = None,
    ) -> None:
        """`on_assignments`, `on_endpoints` and `on_info` (the session's settings, before its
        first assignments) must not block (they queue); `heartbeat` gives each heartbeat's
        content (the engine's health); `logs` answers the manager's requests for container
        output (none: they go unanswered). `on_state(connected, what)` hears each session
        that opens and each wait to reconnect, with a line saying why (it must not block)."""
        self._on_state = on_state
        self._why = ""  # why the last session ended or could not open
        self._logs = logs
        self._on_info = on_info
        # The node certificate's newest credentials for each new channel (None: plaintext, for
        # in-process tests against a plaintext manager).
        self._credentials = credentials
        self._managers = managers.parse(manager)
        self._manager = self._managers[0]
        self._outbox_limit = outbox_limit
        self._node_id = node_id
        self._describe = describe
        self._on_assignments = on_assignments
        self._reporter = reporter
        self._load = load
        self._on_endpoints = on_endpoints
        self._heartbeat_content = heartbeat
        self._beat_now = asyncio.Event()
        # When the last session ended (monotonic seconds); None while one is open.
        self._lost_since: float | None = time.monotonic()
        # The open session's outbox (None while there is none) and its end.
        self._outbox: Outbox | None = None
        self._ended = asyncio.Event()
        # What leave() asked to send (None until it is called).
        self._leaving: dispatcher.Leaving | None = None
        self._restart_grace = 0.0  # as the manager said in SessionInfo
        self._sent_at: dict[str, float] = {}  # "heartbeat", "load" -> when the last one went

    async def leave(self, reason: str) -> None:
        """Tells the manager this agent is stopping to restart, then lets the session end.
        Idempotent; returns at once when no session is open."""
        if self._leaving is not None:
            return
        self._leaving = dispatcher.Leaving(restarting=True, reason=reason)
        if self._outbox is None:
            return
        self._outbox.put(dispatcher.AgentMessage(leaving=self._leaving))
        try:
            async with asyncio.timeout(LEAVE_TIMEOUT_S):
                await self._ended.wait()
            log.info("left the manager (%s); it holds this node's tasks for %g s", reason,
                     self._restart_grace)
        except TimeoutError:
            log.warning("the manager did not end the session within %g s of leaving",
                        LEAVE_TIMEOUT_S)

    def lost_for(self) -> float:
        """Seconds without a session to the manager (0 while connected)."""
        return 0.0 if self._lost_since is None else time.monotonic() - self._lost_since

    @property
    def why(self) -> str:
        """Why the last session ended or could not open ("" before the first attempt ends)."""
        return self._why or "connecting"

    def heartbeat_now(self) -> None:
        """Send a heartbeat at once (what it says changed), not at the next period."""
        self._beat_now.set()

    @property
    def manager(self) -> str:
        """The manager this agent's session goes to (or went to last)."""
        return self._manager

    async def run(self) -> None:
        """Keeps a session open until cancelled."""
        attempt = failures = 0
        while self._leaving is None:
            self._why = "the manager ended the session"
            hint = None
            try:
                async with self._channel() as ch:
                    if await self._session(dispatcher_grpc.DispatcherStub(ch)):
                        attempt = failures = 0
            except grpc.aio.AioRpcError as err:
                hint = managers.leader_hint(err.trailing_metadata())
                if err.code() != grpc.StatusCode.UNAVAILABLE:
                    hint = None
                if err.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.ALREADY_EXISTS,
                                  grpc.StatusCode.PERMISSION_DENIED,
                                  grpc.StatusCode.UNAUTHENTICATED):
                    # UNAUTHENTICATED: this node was removed (`podium node rm`); it may join
                    # again only with a token.
                    log.error("manager refused this agent: %s", err.details())
                    self._why = f"refused: {err.details()}"
                elif hint is not None:
                    self._why = f"not the leader (the leader is at {hint})"
                else:
                    log.warning("session to %s lost: %s (%s)", self._manager, err.code().name,
                                err.details())
                    self._why = err.code().name
            if self._leaving is not None:
                return
            if len(self._managers) > 1 or hint is not None:
                # Another manager may lead: go there now (the one named, else the next one);
                # wait only once a whole round of them failed.
                failed = self._manager
                self._manager = managers.next_address(self._managers, failed, hint)
                if hint is not None:
                    log.info("manager %s does not lead: going to the leader at %s", failed,
                             self._manager)
                failures += 1
                delay = managers.delay_after(failures, len(self._managers))
            else:
                delay = backoff(attempt)
                attempt += 1
            if self._on_state is not None:
                self._on_state(False, f"reconnecting to {self._manager}: {self._why}")
            await asyncio.sleep(delay)

    def _channel(self) -> grpc.aio.Channel:
        if self._credentials is None:
            return grpc.aio.insecure_channel(self._manager, options=CHANNEL_OPTIONS)
        return grpc.aio.secure_channel(self._manager, self._credentials(),
                                       options=[*CHANNEL_OPTIONS, *TLS_OPTIONS])

    async def _session(self, stub: dispatcher_grpc.DispatcherStub) -> bool:
        """One session; returns whether it got as far as registering."""
        outbox = Outbox(self._outbox_limit)
        register = dispatcher.Register(node_id=self._node_id, description=await self._describe())
        outbox.put(dispatcher.AgentMessage(register=register))

        async def requests() -> AsyncIterator[dispatcher.AgentMessage]:
            while (message := await outbox.get()) is not None:
                yield message
                if message.HasField("leaving"):
                    return  # half-close: the manager ends the session when it has read it

        call = stub.Session(requests())
        registered = False
        helpers: list[asyncio.Task[None]] = []

        beats: list[asyncio.Task[None]] = []  # the heartbeat and load loops, at their periods
        periods = (0.0, 0.0)

        def beat(period: float, load_period: float) -> None:
            """(Re)starts the heartbeat and load loops at these periods. On a change, each
            loop's next message goes the shorter of its old and new period after its last one:
            the manager, which still expects the old period for a while, never finds it late,
            and the agents, told all at once, keep the phases they had instead of sending in
            step from then on."""
            nonlocal periods
            if (period, load_period) == periods:
                return
            old, periods = periods, (period, load_period)
            now = time.monotonic()

            def delay(kind: str, new: float, before: float) -> float:
                last = self._sent_at.get(kind)
                return 0.0 if last is None or before <= 0 else \
                    max(0.0, last + min(new, before) - now)

            for job in beats:
                job.cancel()
            beats.clear()
            loads = self._load is not None and load_period > 0
            # Load reports at least as often as heartbeats stand in for them.
            beats.append(asyncio.create_task(self._heartbeat(
                outbox, period, on_demand=loads and load_period <= period,
                delay=delay("heartbeat", period, old[0]))))
            if loads:
                beats.append(asyncio.create_task(self._send_load(
                    outbox, load_period, delay=delay("load", load_period, old[1]))))

        async def receive() -> None:
            nonlocal registered
            async for message in call:
                if message.HasField("session"):
                    period = message.session.heartbeat_period.ToNanoseconds() / 1e9 or 1.0
                    load_period = message.session.load_period.ToNanoseconds() / 1e9
                    if self._on_info is not None:
                        self._on_info(message.session)
                    if registered:  # the manager changed the periods (its cluster grew or shrank)
                        if (period, load_period) != periods:
                            log.info("heartbeat period now %.1f s", period)
                        beat(period, load_period)
                    else:
                        registered = True
                        self._lost_since = None
                        self._restart_grace = message.session.restart_grace.ToNanoseconds() / 1e9
                        self._ended.clear()
                        self._outbox = outbox
                        if self._leaving is not None:  # leave() came while this opened
                            outbox.put(dispatcher.AgentMessage(leaving=self._leaving))
                        self._reporter.resend_all()
                        beat(period, load_period)
                        helpers.append(asyncio.create_task(self._send_status(outbox)))
                        log.info("session open to %s (heartbeat %.1fs)", self._manager, period)
                        if self._on_state is not None:
                            self._on_state(True, f"session with manager {self._manager}")
                elif message.HasField("assignments"):
                    self._on_assignments(message.assignments)
                elif message.HasField("endpoints") and self._on_endpoints is not None:
                    self._on_endpoints(message.endpoints)
                elif (message.HasField("logs") or message.HasField("logs_cancel")) \
                        and self._logs is not None:
                    self._logs.handle(message, outbox.put_when_room)

        receiving = asyncio.create_task(receive())
        full = asyncio.create_task(outbox.full.wait())
        try:
            done, _ = await asyncio.wait({receiving, full}, timeout=REGISTER_TIMEOUT_S,
                                         return_when=asyncio.FIRST_COMPLETED)
            if not done and not registered:
                log.warning("the manager at %s did not answer this agent's registration within "
                            "%g s: reconnecting", self._manager, REGISTER_TIMEOUT_S)
                self._why = "no answer to the registration"
                return False
            if not done:
                await asyncio.wait({receiving, full}, return_when=asyncio.FIRST_COMPLETED)
            if receiving.done():
                receiving.result()  # the stream's end or error
            else:
                log.warning("the manager at %s read nothing of the last %d messages: "
                            "reconnecting", self._manager, self._outbox_limit)
                self._why = "the manager stopped reading"
        finally:
            if registered:
                self._lost_since = time.monotonic()
                self._outbox = None
                self._ended.set()
            if self._logs is not None:
                self._logs.stop_all()  # their requests end with the session, on both sides
            call.cancel()
            outbox.close()
            jobs = (receiving, full, *helpers, *beats)
            for job in jobs:
                job.cancel()
            # Bounded: a task of gRPC's that swallows its cancellation must not keep this agent
            # from reconnecting (or from stopping).
            ended, stuck = await asyncio.wait(jobs, timeout=CANCEL_WAIT_S)
            for job in stuck:
                log.error("a session task did not end within %g s of being cancelled; left "
                          "behind. It waits in %s", CANCEL_WAIT_S, awaiting.where(job))
            for job in ended:
                if job.cancelled():
                    continue
                error = job.exception()  # the reader's too: the call cancelled above may end it
                if job is not receiving and error is not None:  # with an error, not cancelled
                    raise error
        return registered

    async def _heartbeat(self, outbox: Outbox, period: float, *, on_demand: bool,
                         delay: float = 0.0) -> None:
        """A heartbeat after `delay` (what the engine is doing), then every `period`;
        `on_demand`, only when heartbeat_now() asks: the load reports that go every period keep
        the session alive instead, at half the messages."""
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._beat_now.wait()
        while True:
            self._beat_now.clear()
            content = self._heartbeat_content() if self._heartbeat_content else None
            outbox.put(dispatcher.AgentMessage(heartbeat=content or dispatcher.Heartbeat()))
            self._sent_at["heartbeat"] = time.monotonic()
            if on_demand:
                await self._beat_now.wait()
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(period):
                    await self._beat_now.wait()

    async def _send_load(self, outbox: Outbox, period: float, *, delay: float = 0.0) -> None:
        assert self._load is not None
        await asyncio.sleep(delay)
        while True:
            try:
                report = dispatcher.AgentMessage(load=self._load())
            except Exception:
                # It stands in for the heartbeat: a fault in measuring must not silence the node.
                log.exception("measuring the load failed; a heartbeat goes instead")
                report = dispatcher.AgentMessage(heartbeat=self._heartbeat_content()
                                                 if self._heartbeat_content else None)
            outbox.put(report)
            self._sent_at["load"] = time.monotonic()
            await asyncio.sleep(period)

    async def _send_status(self, outbox: Outbox) -> None:
        while True:
            report = await self._reporter.next_batch()
            outbox.put(dispatcher.AgentMessage(status=report))
