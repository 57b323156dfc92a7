"""The agent process: session, worker and executor for one node.

The node's identity is a random id kept in DATA_DIR/node_id, so an agent
restarted with the same data dir is the same node and adopts its containers.

Every loop is a task the agent owns: the session (reads and sends only), the
worker (applies assignments), the engine's events, the engine's health, the
mesh applier and fencing. None waits on another: routing messages update the
routing table at once, in order, and the mesh applier then serves the latest
table (coalescing bursts, and retrying ports it could not serve).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pathlib
import secrets
from typing import TYPE_CHECKING

from podium.agent.certificate import NodeCertificate
from podium.agent.enginehealth import PERIOD_S, PING_TIMEOUT_S, EngineHealth
from podium.agent.executor import Executor, ExecutorError
from podium.agent.internal import InternalMesh
from podium.agent.kernelmesh import KernelMesh
from podium.agent.loadstream import LoadStream
from podium.agent.logs import LogService
from podium.agent.meshpool import MeshPool
from podium.agent.metrics import AgentFigures, agent_registry
from podium.agent.proxy import Mesh
from podium.agent.relay import Relay
from podium.agent.routing import RoutingTable
from podium.agent.sampler import LoadSampler
from podium.agent.secretfiles import SecretFiles
from podium.agent.session import Session
from podium.agent.status import StatusReporter
from podium.agent.worker import Worker
from podium.rules import awaiting, metricsserver
from podium.rules.notify import Notifier
from podium.v1 import dispatcher, objects

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)

VERSION = "0.1.0"
MESH_RETRY = 2.0  # seconds between attempts to serve ports the mesh could not (e.g. in use)
# Under systemd the agent is READY once its session is open; without one by then it says READY
# all the same (its status line says it is reconnecting), so that a host booting while the
# manager is away neither waits for it nor has systemd kill the agent (TimeoutStartSec=90s) and
# start it again, and again, while its containers run on.
READY_WITHOUT_SESSION_S = 60.0
# How long stop() waits for its loops to end once cancelled (then it logs where they wait).
STOP_WAIT_S = 10.0


def load_node_id(data_dir: pathlib.Path) -> str:
    path = data_dir / "node_id"
    with contextlib.suppress(FileNotFoundError):
        node_id = path.read_text().strip()
        if node_id:
            return node_id
    data_dir.mkdir(parents=True, exist_ok=True)
    node_id = secrets.token_hex(10)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(node_id + "\n")
    tmp.replace(path)
    return node_id


def per_task(counts: dict[int, dict[str, int]]) -> dict[str, int]:
    """Published port -> task id -> count, summed over the ports: task id -> count."""
    total: dict[str, int] = {}
    for per_port in counts.values():
        for task_id, n in per_port.items():
            total[task_id] = total.get(task_id, 0) + n
    return total


class Agent:
    def __init__(
        self,
        *,
        manager: str,
        name: str,
        node_id: str,
        executor: Executor,
        labels: dict[str, str] | None = None,
        mesh: str = "asyncio",
        mesh_workers: int = 0,
        engine_ping: tuple[float, float] = (PERIOD_S, PING_TIMEOUT_S),
        relay_port: int | None = None,
        secret_files: SecretFiles | None = None,
        certificate: NodeCertificate | None = None,
        metrics_listen: str = metricsserver.OFF,
        notifier: Notifier | None = None,
    ) -> None:
        """`engine_ping`: how often the engine's health is checked, and the deadline of each
        check, in seconds. With `relay_port` (0: any free port) and an executor that can read
        its engine's networks, services reach each other by name (podium.agent.internal).
        `secret_files`: where the data of the secrets that come with the assignments is kept
        (the executor writes tasks' files there). `certificate`: the node's, for mutual TLS
        (None: plaintext, for in-process tests against a plaintext manager). `metrics_listen`:
        HOST:PORT to serve Prometheus metrics on over plain HTTP (podium.agent.metrics), or 'off'
        (the default here, so that agents in one process never clash; the daemon's flag is on
        by default). `notifier`: told READY=1 when the first session opens (under systemd), and
        each session's state after."""
        self._notifier = notifier or Notifier()
        self._ready = False
        metricsserver.parse_listen(metrics_listen)  # ValueError now rather than at start
        self._metrics_listen = metrics_listen
        self._metrics_server: metricsserver.MetricsServer | None = None
        self.metrics_port = 0
        self._certificate = certificate
        self._files = secret_files
        self.node_id = node_id
        self._name = name
        self._labels = dict(labels or {})
        self._executor = executor
        self._reporter = StatusReporter()
        self._worker = Worker(executor=executor, reporter=self._reporter)
        self._routes = RoutingTable()
        # "kernel": nftables DNAT rules (podium.agent.kernelmesh) instead of the asyncio proxy,
        # which runs in `mesh_workers` processes of its own (podium.agent.meshpool), or in this
        # process's event loop with 0.
        self._mesh: Mesh | MeshPool | KernelMesh
        if mesh == "kernel":
            self._mesh = KernelMesh()
        elif mesh_workers:
            self._mesh = MeshPool(workers=mesh_workers)
        else:
            self._mesh = Mesh()
        self._load = load = LoadStream(
            sampler=LoadSampler(), running=self._worker.running_pids,
            connections=self._mesh_connections, requests=self._mesh_requests,
            mesh_counted=not isinstance(self._mesh, KernelMesh))
        self._engine = EngineHealth(executor=executor, on_change=self._engine_changed,
                                    period=engine_ping[0], timeout=engine_ping[1])
        self._logs = LogService(executor)
        self._session = Session(
            manager=manager,
            node_id=node_id,
            describe=self._describe,
            on_assignments=self._assigned,
            reporter=self._reporter,
            load=load.next_report,
            on_endpoints=self._route,
            heartbeat=self._heartbeat,
            on_info=self._session_info,
            credentials=certificate.channel_credentials if certificate else None,
            logs=self._logs,
            on_state=self._session_state,
        )
        if certificate is not None:
            certificate.follow(lambda: self._session.manager)
        self._internal: InternalMesh | None = None
        self._relay: Relay | None = None
        members = getattr(executor, "network_members", None)
        if relay_port is not None and members is not None:
            self._internal = InternalMesh(node_id=node_id, members=members)
            self._relay = Relay(lookup=self._internal.relay_target, port=relay_port)
        self._tasks: list[asyncio.Task[None]] = []
        self._mesh_errors: list[str] = []  # from the last apply: ports not served
        self._mesh_due = asyncio.Event()
        self._description: objects.NodeDescription | None = None  # the last one the engine gave

    def _assigned(self, assignments: dispatcher.Assignments) -> None:
        # Before the worker sees the tasks: their runners may create containers at once.
        if self._files is not None:
            complete = assignments.type == dispatcher.Assignments.TYPE_COMPLETE
            self._files.remember(assignments.secrets, complete=complete)
        self._worker.submit(assignments)

    def _heartbeat(self) -> dispatcher.Heartbeat:
        return dispatcher.Heartbeat(engine_unresponsive=self._engine.unresponsive,
                                    engine_error=self._engine.error)

    def _engine_changed(self) -> None:
        self._session.heartbeat_now()
        if not self._engine.unresponsive:
            # Events may have been missed while it did not answer (a restarted engine's
            # stream is new): every runner looks at its container again.
            self._worker.resync()

    def _session_info(self, info: dispatcher.SessionInfo) -> None:
        if self._internal is not None:
            self._internal.configure(info.resolver_addr)
            self._executor.resolver = info.resolver_addr  # type: ignore[attr-defined]

    def _session_state(self, connected: bool, what: str) -> None:
        if connected and not self._ready:
            self._ready = True
            self._notifier.ready(what)
        else:
            self._notifier.status(what)

    async def _ready_without_session(self, after: float) -> None:
        await asyncio.sleep(after)
        if not self._ready:
            self._ready = True
            log.warning("no session with the manager after %g s: telling systemd this agent "
                        "is ready all the same (it keeps trying)", after)
            self._notifier.ready(f"no session with the manager yet ({self._session.why}); "
                                 "retrying")

    def _route(self, message: dispatcher.Endpoints) -> None:
        """Called by the session's read loop: must not block."""
        self._routes.apply(message)
        self._mesh_due.set()

    async def _serve_mesh(self) -> None:
        """Serves the latest routing table after every change; a port that could not be served
        (in use by another process, say) is tried again every MESH_RETRY seconds, not only
        when the routing tables next change."""
        while True:
            if self._mesh_errors:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(MESH_RETRY):
                        await self._mesh_due.wait()
            else:
                await self._mesh_due.wait()
            self._mesh_due.clear()
            try:
                errors = await self._mesh.apply(self._routes.listeners())
                if self._internal is not None:
                    errors += await self._internal.apply(self._routes.tables())
            except Exception:  # a fault in the mesh must not stop the agent's routing for good
                log.exception("mesh: could not apply the routing tables; retrying")
                errors = ["the routing tables could not be applied"]
            for error in errors:
                if error not in self._mesh_errors:  # each once, not at every retry
                    log.error("mesh: %s", error)
            for error in self._mesh_errors:
                if error not in errors:
                    log.info("mesh: resolved: %s", error)
            self._mesh_errors = errors

    def _mesh_connections(self) -> dict[str, int]:
        """Task id -> connections open to it through this node's mesh."""
        return per_task(self._mesh.stats())

    def _mesh_requests(self) -> dict[str, int]:
        """Task id -> requests forwarded to it through this node's mesh since the agent started
        (counters; the kernel mesh counts none, and its reports say so)."""
        return per_task(self._mesh.requests())

    async def _describe(self) -> objects.NodeDescription:
        try:
            info = await self._executor.info()
        except ExecutorError as err:
            # A session must still open while the engine does not answer (the heartbeat then
            # says so): describe the node as the engine last did.
            if self._description is None:
                raise
            log.warning("engine info unavailable (%s): registering with the last one", err)
            return self._description
        desc = objects.NodeDescription(
            name=self._name,
            labels=self._labels,
            engine_version=info.version,
            agent_version=VERSION,
            relay_port=self._relay.port if self._relay is not None else 0,
        )
        desc.capacity.nano_cpus = info.nano_cpus
        desc.capacity.memory_bytes = info.memory_bytes
        self._description = desc
        return desc

    async def start(self) -> None:
        if self._files is not None:
            await self._files.open()
        if self._relay is not None:  # before the session: its port is in the description
            try:
                await self._relay.start()
            except OSError as err:  # the rest of the agent runs; other nodes cannot reach in
                log.error("relay: cannot listen on port %d: %s; this node's replicas are not "
                          "reachable by name from other nodes", self._relay.port, err)
                self._relay = None
        self._tasks = [
            asyncio.create_task(self._worker.run(), name="worker"),
            asyncio.create_task(self._worker.follow_events(), name="events"),
            asyncio.create_task(self._engine.run(), name="engine-health"),
            asyncio.create_task(self._session.run(), name="session"),
            asyncio.create_task(self._fence(), name="fence"),
            asyncio.create_task(self._serve_mesh(), name="mesh"),
        ]
        if self._notifier.enabled:
            self._tasks.append(asyncio.create_task(
                self._ready_without_session(READY_WITHOUT_SESSION_S), name="ready-fallback"))
        if self._certificate is not None:
            self._tasks.append(asyncio.create_task(self._certificate.renew_forever(),
                                                   name="certificate"))
        if metricsserver.parse_listen(self._metrics_listen) is not None:
            server = metricsserver.MetricsServer(listen=self._metrics_listen,
                                                 registry=self._metrics_registry())
            try:
                await server.start()
            except OSError as err:  # the node runs its tasks all the same
                log.error("metrics: cannot listen on %s: %s; no metrics from this agent",
                          self._metrics_listen, err)
            else:
                self._metrics_server, self.metrics_port = server, server.port

    def _metrics_registry(self) -> CollectorRegistry:
        mesh = self._mesh
        return agent_registry(AgentFigures(
            port_services=lambda: {port: r.service for port, r in self._routes.routes().items()},
            connections=mesh.stats, requests=mesh.requests,
            traffic=None if isinstance(mesh, KernelMesh) else mesh.traffic,
            restarts=self._worker.restarts, health_results=self._worker.health_results,
            containers_running=self._worker.containers_running,
            engine_up=lambda: not self._engine.unresponsive,
        ))

    async def _fence(self, period: float = 0.5) -> None:
        while True:
            await asyncio.sleep(period)
            if lost := self._session.lost_for():
                self._worker.fence(lost)

    async def serve_forever(self) -> None:
        done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()

    async def stop(self) -> None:
        """Idempotent. Leaves containers running for the next agent to adopt, and first tells
        the manager this agent is restarting, so that it holds the node's tasks meanwhile."""
        if self._metrics_server is not None:
            await self._metrics_server.stop()
            self._metrics_server = None
        if self._tasks:
            await self._session.leave("agent stopped")
        for task in self._tasks:
            task.cancel()
        await awaiting.ended(self._tasks, STOP_WAIT_S, log, "agent")
        self._tasks.clear()
        await self._logs.close()
        await self._mesh.close()
        if self._internal is not None:
            await self._internal.close()
        if self._relay is not None:
            await self._relay.close()
        await self._worker.close()
        await self._executor.close()

    async def __aenter__(self) -> Agent:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
