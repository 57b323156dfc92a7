"""The manager process: one store, its control loops and the gRPC server.

This module alone wires the components; they share only the store. Start
order: store, loops, then the server; stop runs in reverse.

Managers sharing an etcd store elect a leader (leadership.py): then the loops, the autoscaler
and the agents' sessions (the dispatcher) run on the leader only, started afresh from the
store each time this manager becomes the leader, as a restarted manager starts them (its
dispatcher gives every node its startup grace to reconnect; no task is replaced for it), and
stopped the moment it stops leading. The store, the certificates' authority and the API run on
every manager; a follower refuses what needs the leader (leadergate.py).
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import logging
import pathlib
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from podium.manager._loop import ReconcileLoop
from podium.manager.autoscaler import Autoscaler
from podium.manager.controlapi import WATCH_LIMIT, ControlAPI
from podium.manager.dashboard import Dashboard
from podium.manager.dispatcher import (
    DEFAULT_HEARTBEATS_PER_SECOND,
    OUTBOX_LIMIT,
    STOPPING,
    Dispatcher,
)
from podium.manager.ids import new_id
from podium.manager.leadergate import DispatcherFront, LeaderGate
from podium.manager.leadership import DEFAULT_TTL_S, EtcdUnavailable, LeaderInfo, Leadership
from podium.manager.loadbook import LoadBook
from podium.manager.metrics import ManagerMetrics
from podium.manager.nodemonitor import DEFAULT_PROBE_TIMEOUT_S, DEFAULT_RESTART_GRACE_S
from podium.manager.orchestrator import Orchestrator
from podium.manager.pki import NODE_LIFETIME, ClusterCA
from podium.manager.reaper import Reaper
from podium.manager.requestguard import MAX_RECEIVE_BYTES, RequestGuard
from podium.manager.scheduler import Scheduler
from podium.manager.security import Authority, JoinServicer, local_names
from podium.manager.store import (
    SQLITE,
    AnyStore,
    EtcdStore,
    EtcdTlsFiles,
    KeyRing,
    StoreError,
    close_store,
    open_store,
)
from podium.manager.updater import Updater
from podium.rules import awaiting, metricsserver, network
from podium.rules.notify import Notifier
from podium.v1 import control, control_grpc, dispatcher, dispatcher_grpc, objects

log = logging.getLogger(__name__)

# Limits on what a peer can make the server hold (README, "Limits"):
# - Messages: gRPC refuses a request larger than MAX_RECEIVE_BYTES (64 MiB, sized for an agent's
#   status report of 5,000 tasks) with RESOURCE_EXHAUSTED before it reaches Python, and
#   RequestGuard refuses one over its service's own limit (Control: 8 MiB) the same way, and a
#   malformed one with INVALID_ARGUMENT (requestguard.py).
# - Connections: one that does not finish its handshake (the HTTP/2 preface and settings; the
#   TLS handshake once there is one) within HANDSHAKE_TIMEOUT_S is closed; a connection that
#   carries no call for MAX_CONNECTION_IDLE_S is closed (the client reconnects when it needs
#   to; an agent's session is a call, so its connection is never idle).
HANDSHAKE_TIMEOUT_S = 10.0
# How long a stop waits for the manager's cancelled tasks (one still running is logged).
STOP_WAIT_S = 10.0
# How often the status line systemd shows is brought up to date (only sent when it changed).
STATUS_PERIOD_S = 5.0
MAX_CONNECTION_IDLE_S = 300.0
SERVER_OPTIONS = [
    # Reconnect storms after a manager restart: every agent reconnects at once.
    ("grpc.server.max_pending_requests", 20_000),
    ("grpc.server.max_pending_requests_hard_limit", 40_000),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
    ("grpc.max_connection_idle_ms", int(MAX_CONNECTION_IDLE_S * 1000)),
]


class Manager:
    def __init__(
        self,
        *,
        listen: str,
        data_dir: pathlib.Path | str,
        heartbeat_period: float = 1.0,
        heartbeats_per_second: float = DEFAULT_HEARTBEATS_PER_SECOND,
        down_grace: float = 1.0,
        restart_grace: float = DEFAULT_RESTART_GRACE_S,
        probe_timeout: float = DEFAULT_PROBE_TIMEOUT_S,
        watch_limit: int = WATCH_LIMIT,
        outbox_limit: int = OUTBOX_LIMIT,
        load_period: float = 1.0,
        virtual_ip_range: str = network.DEFAULT_RANGE,
        handshake_timeout: float = HANDSHAKE_TIMEOUT_S,
        plaintext: bool = False,
        join_listen: str | None = None,
        names: tuple[str, ...] = (),
        admin_credentials: pathlib.Path | None = None,
        node_cert_lifetime: datetime.timedelta = NODE_LIFETIME,
        metrics_listen: str = metricsserver.OFF,
        dashboard_listen: str = metricsserver.OFF,
        notifier: Notifier | None = None,
        store: str = SQLITE,
        etcd_tls: EtcdTlsFiles | None = None,
        advertise: str | None = None,
        leader_ttl: int = DEFAULT_TTL_S,
        election: tuple[tuple[str, ...], str] | None = None,
    ) -> None:
        """Mutual TLS on `listen` and the join port (`join_listen`, by default the same host
        and the next port; port 0 stays 0) unless `plaintext`, which only in-process tests use
        (the daemon has no such flag). `names`: more names and addresses the manager's
        certificate is valid for. `admin_credentials`: where to write the local admin's
        credentials file (None: nowhere). `metrics_listen`: HOST:PORT to serve Prometheus
        metrics on over plain HTTP (podium.manager.metrics), or 'off' (the default here; the
        daemon's flag is on by default). `dashboard_listen`: HOST:PORT to serve the dashboard
        on over HTTPS (podium.manager.dashboard; it needs TLS: not with `plaintext`), or 'off'
        (the default here; the daemon's is on). `notifier`: told READY=1 once the API serves
        (under systemd), then how many agents are connected. `store`: "sqlite" (DATA_DIR/
        state.db) or an etcd URL, with `etcd_tls` for etcds:// (podium.manager.store._open):
        managers on one etcd store elect a leader (leadership.py). `advertise`: the HOST:PORT
        other managers send clients and agents to when this one leads (default: the address it
        listens on; the join port is that host and the join port). `leader_ttl`: the leader's
        lease. `election`: (etcd endpoints, key prefix) to elect a leader on when the store is
        not etcd's (tests of the election alone)."""
        self._notifier = notifier or Notifier()
        network.parse_range(virtual_ip_range)  # ValueError now rather than at the first service
        metricsserver.parse_listen(metrics_listen)  # likewise
        if metricsserver.parse_listen(dashboard_listen) is not None and plaintext:
            raise ValueError("the dashboard needs TLS: a plaintext manager cannot serve it")
        self._dashboard_listen = dashboard_listen
        self.dashboard: Dashboard | None = None
        self._metrics_listen = metrics_listen
        self._metrics_server: metricsserver.MetricsServer | None = None
        self.metrics_port = 0
        self._plaintext = plaintext
        self._join_listen = join_listen if join_listen is not None else next_port(listen)
        self._names = names
        self._admin_credentials = admin_credentials
        self._node_cert_lifetime = node_cert_lifetime
        self.authority: Authority | None = None
        self._virtual_ip_range = virtual_ip_range
        self._listen = listen
        self._data_dir = pathlib.Path(data_dir)
        self._heartbeat_period = heartbeat_period
        self._heartbeats_per_second = heartbeats_per_second
        self._down_grace = down_grace
        self._restart_grace = restart_grace
        self._probe_timeout = probe_timeout
        self._watch_limit = watch_limit
        self._outbox_limit = outbox_limit
        self._load_period = load_period
        self._handshake_timeout = handshake_timeout
        self._store_url = store
        self._etcd_tls = etcd_tls
        self._store: AnyStore | None = None
        self._server: grpc.aio.Server | None = None
        self._join_server: grpc.aio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.port = 0
        self.join_port = 0
        self._advertise = advertise
        self._leader_ttl = leader_ttl
        self._election = election
        self.id = new_id()
        self.leadership: Leadership | None = None
        self._term_tasks: list[asyncio.Task[None]] = []
        self._ended_terms: list[asyncio.Task[None]] = []
        self.terms = 0  # how many times this manager became the leader

    async def start(self) -> None:
        self._data_dir.mkdir(parents=True, exist_ok=True)
        # Secrets are sealed on disk under the key ring in DATA_DIR/keys (made on first start);
        # SealingError when a stored secret's key is not in it: the manager does not start.
        ring = KeyRing.open(self._data_dir / "keys")
        store = self._store = await open_store(self._store_url, data_dir=self._data_dir,
                                               sealer=ring, tls_files=self._etcd_tls)
        metrics = ManagerMetrics()
        store.on_commit = metrics.commit_seconds.observe
        authority = None
        if not self._plaintext:
            authority = self.authority = Authority(
                store=store, ca=ClusterCA.load_or_create(self._data_dir / "pki"),
                node_lifetime=self._node_cert_lifetime)
            await authority.prepare()
            self._tasks.append(asyncio.create_task(authority.run(), name="authority"))
        load = self._load = LoadBook()
        # Kept across terms: what it last saw fills reads; its pass runs on the leader only.
        autoscaler = self._autoscaler = Autoscaler(store=store, load=load,
                                                   period=self._load_period)
        self._metrics = metrics
        self._authority_for_terms = authority
        leadership = self.leadership = self._leadership_for(store)
        if leadership is not None and authority is not None:
            await _check_shared_ca(leadership, authority.ca.pem, self._data_dir)
        gate = LeaderGate(leadership)
        front = self._front = DispatcherFront(gate)
        metrics.collect_from(store=store, load=load, sessions=lambda: front.sessions_open,
                             autoscale_decisions=autoscaler.decisions)
        if leadership is None:
            self._begin_term()  # the only manager: it leads from the start

        options = [*SERVER_OPTIONS,
                   ("grpc.server_handshake_timeout_ms", int(self._handshake_timeout * 1000))]
        guard = RequestGuard(admit=_both(authority.admit, gate.admit) if authority
                             else gate.admit)
        server = self._server = grpc.aio.server(options=options, interceptors=[guard])
        hosts = (*local_names(self._listen), *self._names)
        if authority is not None:
            await self._serve_dashboard(store, load, authority, autoscaler.fill, hosts)
        control_api = ControlAPI(store=store, load=load, watch_limit=self._watch_limit,
                                 autoscale_view=autoscaler.fill,
                                 rotate_secrets_key=store.rotate_key,
                                 virtual_ip_range=self._virtual_ip_range, authority=authority,
                                 logs_from=front,
                                 dashboard_login=self.dashboard.login if self.dashboard else None)
        control_grpc.add_ControlServicer_to_server(control_api, server)
        dispatcher_grpc.add_DispatcherServicer_to_server(front, server)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        names = [
            control.DESCRIPTOR.services_by_name["Control"].full_name,
            dispatcher.DESCRIPTOR.services_by_name["Dispatcher"].full_name,
            health.SERVICE_NAME,
            reflection.SERVICE_NAME,
        ]
        reflection.enable_server_reflection(names, server)
        if authority is None:
            self.port = server.add_insecure_port(self._listen)
        else:
            self.port = server.add_secure_port(
                self._listen, authority.server_credentials(hosts, client_auth=True))
        if self.port == 0:
            raise OSError(f"cannot listen on {self._listen}")
        await server.start()
        for name in ("", *names[:2]):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        if authority is not None:
            await self._serve_joins(authority, options, hosts, gate)
            if self._admin_credentials is not None:
                await authority.write_admin_credentials(self._admin_credentials,
                                                        self.advertised)
        if metricsserver.parse_listen(self._metrics_listen) is not None:
            server = metricsserver.MetricsServer(listen=self._metrics_listen,
                                                 registry=metrics.registry)
            try:
                await server.start()
            except OSError as err:  # the cluster runs all the same
                log.error("metrics: cannot listen on %s: %s; no metrics from this manager",
                          self._metrics_listen, err)
            else:
                self._metrics_server, self.metrics_port = server, server.port
                log.info("metrics on http://%s/metrics", self._metrics_listen)
        if self.leadership is not None:
            host = self.advertised.rpartition(":")[0]
            self.leadership.me = LeaderInfo(id=self.id, control=self.advertised,
                                            join=f"{host}:{self.join_port}" if self.join_port
                                            else "")
            self._tasks.append(asyncio.create_task(self.leadership.run(), name="leadership"))
        log.info("manager listening on %s (data in %s)", self._listen, self._data_dir)
        self._notifier.ready(self._serving())
        if self._notifier.enabled:
            self._tasks.append(asyncio.create_task(self._tell_status(), name="notify-status"))

    @property
    def advertised(self) -> str:
        """Where clients and agents reach this manager (HOST:PORT)."""
        return self._advertise or f"{local_address(self._listen)}:{self.port}"

    @property
    def dispatcher(self) -> Dispatcher:
        """The current term's dispatcher (for in-process tests); RuntimeError on a follower."""
        current = self._front.current if self._store is not None else None
        if current is None:
            raise RuntimeError("this manager does not lead: it runs no dispatcher")
        return current

    def _leadership_for(self, store: AnyStore) -> Leadership | None:
        """The election this manager takes part in: the managers of one etcd store (on its
        members, through its connection); none with a store of its own (SQLite)."""
        common: dict[str, Any] = dict(
            ttl=self._leader_ttl, me=LeaderInfo(id=self.id, control=""),
            on_elected=self._begin_term, on_deposed=self._end_term)
        if isinstance(store, EtcdStore):
            return Leadership(endpoints=store.target.endpoints, prefix=store.target.prefix,
                              stubs_for=store.connection.stubs, **common)
        if self._election is None:
            return None
        endpoints, prefix = self._election
        return Leadership(endpoints=endpoints, prefix=prefix, **common)

    def _begin_term(self) -> None:
        """This manager leads from now: its loops and dispatcher start from the store's state,
        as those of a manager that restarted."""
        store, metrics = self.store, self._metrics
        loops: list[ReconcileLoop] = [
            Orchestrator(store=store),
            Scheduler(store=store, on_assigned=metrics.scheduling_seconds.observe),
            Reaper(store=store),
            Updater(store=store),
        ]
        leadership = self.leadership
        dispatch = Dispatcher(
            store=store, load=self._load, heartbeat_period=self._heartbeat_period,
            heartbeats_per_second=self._heartbeats_per_second,
            down_grace=self._down_grace, restart_grace=self._restart_grace,
            probe_timeout=self._probe_timeout, outbox_limit=self._outbox_limit,
            load_period=self._load_period, virtual_ip_range=self._virtual_ip_range,
            authority=self._authority_for_terms, on_heartbeat=metrics.heartbeat_seconds.observe,
            may_dispatch=leadership.may_dispatch if leadership is not None else lambda: True,
        )
        self._front.current = dispatch
        jobs = [*((loop.run(), loop.name) for loop in loops), (dispatch.run(), "dispatcher"),
                (self._autoscaler.run(), self._autoscaler.name)]
        for job, name in jobs:
            task = asyncio.create_task(job, name=name)
            task.add_done_callback(_log_failure)
            self._term_tasks.append(task)
        self.terms += 1
        if leadership is not None:
            log.info("leading (term %d of this manager): loops and agent sessions started",
                     self.terms)

    def _end_term(self, why: str) -> None:
        """This manager stopped leading: at once (synchronously) its dispatcher ends every
        agent session and sends nothing more, and every loop is cancelled."""
        dispatch, self._front.current = self._front.current, None
        if dispatch is not None:
            dispatch.close_all()
        for task in self._term_tasks:
            task.cancel()
        self._ended_terms = [t for t in self._ended_terms if not t.done()] + self._term_tasks
        self._term_tasks = []
        log.warning("no longer leading (%s): loops stopped, agent sessions closed", why)

    def _serving(self) -> str:
        """The status line: where it serves and how many agents are connected."""
        host = self._listen.rpartition(":")[0]
        what = f"serving on {host}:{self.port}"
        if self._join_server is not None:
            what += f", joins on {self._join_listen.rpartition(':')[0]}:{self.join_port}"
        if self.leadership is not None and not self.leadership.is_leader:
            leader = self.leadership.leader
            return f"{what}; following {leader.control if leader else '(no leader yet)'}"
        return f"{what}; {self._front.sessions_open} agent session(s)"

    async def _tell_status(self) -> None:
        while True:
            await asyncio.sleep(STATUS_PERIOD_S)
            self._notifier.status(self._serving())

    async def _serve_dashboard(self, store: AnyStore, load: LoadBook, authority: Authority,
                               fill: Callable[[objects.Service], None],
                               hosts: tuple[str, ...]) -> None:
        """The dashboard, unless it is off; an address it cannot listen on is logged and the
        manager runs without it (Control.DashboardLogin then says so)."""
        if metricsserver.parse_listen(self._dashboard_listen) is None:
            return
        dashboard = Dashboard(listen=self._dashboard_listen, store=store, load=load,
                              ca=authority.ca, names=hosts, autoscale_view=fill)
        try:
            await dashboard.start()
        except OSError as err:
            log.error("dashboard: cannot listen on %s: %s; no dashboard from this manager",
                      self._dashboard_listen, err)
            return
        self.dashboard = dashboard
        self._tasks.append(asyncio.create_task(dashboard.run(), name="dashboard"))
        log.info("dashboard on https://%s (`podium dashboard` prints a login link)",
                 self._dashboard_listen)

    async def _serve_joins(self, authority: Authority, options: list[tuple[str, int]],
                           hosts: tuple[str, ...], gate: LeaderGate) -> None:
        """The join port: TLS without client certificates, serving only Join (the leader)."""
        server = self._join_server = grpc.aio.server(
            options=options, interceptors=[RequestGuard(admit=gate.admit)])
        dispatcher_grpc.add_JoinServicer_to_server(JoinServicer(authority), server)
        self.join_port = server.add_secure_port(
            self._join_listen, authority.server_credentials(hosts, client_auth=False))
        if self.join_port == 0:
            raise OSError(f"cannot listen on {self._join_listen} (the join port)")
        await server.start()
        log.info("agents join on %s", self._join_listen)

    @property
    def store(self) -> AnyStore:
        """The running manager's store (for in-process tests and tools; read it, never write)."""
        if self._store is None:
            raise RuntimeError("the manager is not running")
        return self._store

    async def stop(self) -> None:
        """Idempotent."""
        if self.leadership is not None:
            await self.leadership.resign()  # another manager leads at once, not after the TTL
        if self.dashboard is not None:
            await self.dashboard.stop()
            self.dashboard = None
        if self._metrics_server is not None:
            await self._metrics_server.stop()
            self._metrics_server = None
        front = getattr(self, "_front", None)  # none before start()
        if front is not None and front.current is not None:
            # Its sessions end without a word written: as they ended one by one, each node
            # would be stored suspect and its host probed (5,000 writes and probes on the way
            # down, and every node suspect at the next start).
            front.current.close_all(STOPPING)
        for server in (self._join_server, self._server):
            if server is not None:
                await server.stop(grace=1.0)
        self._server = self._join_server = None
        tasks = [*self._tasks, *self._term_tasks, *self._ended_terms]
        for task in tasks:
            task.cancel()
        await awaiting.ended(tasks, STOP_WAIT_S, log, "manager")
        self._tasks.clear()
        self._term_tasks.clear()
        self._ended_terms.clear()
        if self._store is not None:
            store, self._store = self._store, None
            await close_store(store)

    async def __aenter__(self) -> Manager:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        """Runs until cancelled, or until a component fails (with SQLite, a loop; on etcd, a
        loop's failure is logged and the term goes on)."""
        watched = self._tasks if self.leadership is not None else \
            [*self._tasks, *self._term_tasks]
        done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()


async def _check_shared_ca(leadership: Leadership, ca: bytes, data_dir: pathlib.Path) -> None:
    """Every manager of one store must have the same cluster CA (a copy of the first one's
    DATA_DIR/pki): the first records its digest, the others compare; ValueError otherwise."""
    mine = hashlib.sha256(ca).hexdigest().encode()
    try:
        theirs = await leadership.agree("ca", mine)
    except EtcdUnavailable as err:
        raise StoreError(str(err)) from None
    if theirs != mine:
        raise ValueError(
            f"this manager's cluster CA ({data_dir / 'pki'}, sha256 {mine.decode()[:16]}...) is "
            f"not the one the other managers on this store use ({theirs.decode()[:16]}...): "
            "stop it, replace its pki/ and keys/ with copies from a running manager's data dir "
            "(README: Three managers on etcd), and start it again")


def _both(first: Callable[[str, Any], None],
          second: Callable[[str, Any], None]) -> Callable[[str, Any], None]:
    def admit(method: str, context: Any) -> None:
        first(method, context)
        second(method, context)

    return admit


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("%s failed", task.get_name(), exc_info=task.exception())


def next_port(listen: str) -> str:
    """HOST:PORT+1 (the join port's default); HOST:0 stays HOST:0."""
    host, _, port = listen.rpartition(":")
    return f"{host}:{int(port) + 1 if int(port) else 0}"


def local_address(listen: str) -> str:
    """The host a local client reaches a manager listening on `listen` at."""
    host = listen.rpartition(":")[0].strip("[]")
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
