"""Internal routing: every service on a network is reachable, by name, at its virtual IP.

On each node the agent
- puts the name server's address and every internal service's virtual IP on the loopback
  interface (`ip address add VIP/32 dev lo`), so that a container's connection to a virtual IP
  goes to its own node and to the agent;
- serves each service's internal ports on its virtual IP with the mesh's proxy
  (podium.agent.proxy: the same balancing, health gating, draining and retry as the ingress mesh),
  forwarding to replicas on this node at their container address and to replicas elsewhere
  through their node's relay (podium.agent.relay);
- admits a connection only from a container on one of the service's networks (its source
  address, looked up in the engine's networks: `members`), so that stacks are isolated;
- answers name queries from containers (podium.agent.dns) with the virtual IP of the service of
  that name on one of the asking container's networks.

A container address not known yet (a container just started) makes the agent read the engine's
networks again, at most every REFRESH_MIN_S; a connection from it meanwhile is refused, a name
query waits for the read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterable

from podium.agent import relay
from podium.agent.dns import NameServer, upstreams
from podium.agent.meshspec import CONNECT_TIMEOUT_S, Endpoint, ListenerSpec
from podium.agent.proxy import Mesh
from podium.rules.network import names as network_names
from podium.rules.routing import balance_name
from podium.v1 import dispatcher

log = logging.getLogger(__name__)

REFRESH_MIN_S = 0.2  # seconds between two reads of the engine's networks
REFRESH_EVERY_S = 5.0  # and a read at least this often while internal services exist


class InternalMesh:
    def __init__(self, *, node_id: str,
                 members: Callable[[], Awaitable[dict[str, frozenset[str]]]],
                 connect_timeout: float = CONNECT_TIMEOUT_S,
                 run_ip: Callable[[list[str]], Awaitable[str]] | None = None) -> None:
        self._node_id = node_id
        self._members_of = members
        # Runs `ip` batch lines, returning its complaints ("" when none): `_ip_batch`.
        self._run_ip = run_ip or _ip_batch
        self._connect_timeout = connect_timeout
        self._resolver = ""
        self._members: dict[str, frozenset[str]] = {}  # container address -> its networks
        self._names: dict[str, list[tuple[str, str]]] = {}  # name -> (network, virtual IP)
        self._targets: dict[tuple[str, int], str] = {}  # (task id, port) -> container address
        self._meshes: dict[str, Mesh] = {}  # virtual IP -> its listeners
        self._addresses: set[str] = set()  # on lo, put there by this agent
        self._dns: NameServer | None = None
        self._refreshed = 0.0
        self._refreshing: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None

    # -- configuration from the manager -------------------------------------------------------

    def configure(self, resolver: str) -> None:
        """The name server's address, from the session."""
        self._resolver = resolver

    async def apply(self, tables: Iterable[dispatcher.ServiceEndpoints]) -> list[str]:
        """Serves exactly the internal services of `tables`; returns what could not be."""
        wanted: dict[str, dict[int, ListenerSpec]] = {}
        names: dict[str, list[tuple[str, str]]] = {}
        targets: dict[tuple[str, int], str] = {}
        for table in tables:
            if not table.virtual_ip or not table.internal_ports:
                continue
            networks = frozenset(n.name for n in table.networks)
            for attachment in table.networks:
                for name in network_names(table.service_name, attachment):
                    names.setdefault(name.lower(), []).append((attachment.name, table.virtual_ip))
            listeners = wanted[table.virtual_ip] = {}
            for port in table.internal_ports:
                endpoints = []
                for e in table.endpoints:
                    if not e.container_addr:
                        continue
                    if e.node_id == self._node_id:
                        # Only this node's replicas: another node's container address may
                        # be a different container here (each engine picks its subnets).
                        targets[(e.task_id, port)] = e.container_addr
                        endpoints.append(Endpoint(e.task_id, e.container_addr, port))
                    elif e.relay_port:
                        endpoints.append(Endpoint(e.task_id, e.addr, e.relay_port,
                                                  relay.preamble(e.task_id, port)))
                listeners[port] = ListenerSpec(
                    endpoints=tuple(endpoints), balance=balance_name(table.routing.balance),
                    admit=self._admitter(networks))
        self._names, self._targets = names, targets
        errors = await self._addresses_for(set(wanted))
        for vip in sorted(set(self._meshes) - set(wanted)):
            await self._meshes.pop(vip).close()
        for vip, listeners in sorted(wanted.items()):
            mesh = self._meshes.get(vip)
            if mesh is None:
                mesh = self._meshes[vip] = Mesh(host=vip, connect_timeout=self._connect_timeout)
            errors += [f"{vip}: {e}" for e in await mesh.apply(listeners)]
        errors += await self._serve_names()
        if wanted and self._refresher is None:
            self._refresher = asyncio.create_task(self._refresh_often(), name="networks")
        self._wake_refresh()
        return errors

    # -- who is on which network --------------------------------------------------------------

    def _admitter(self, networks: frozenset[str]) -> Callable[[object], bool]:
        def admit(peer: object) -> bool:
            address = peer[0] if isinstance(peer, tuple) else ""
            found = self._members.get(str(address))
            if found is None:
                self._wake_refresh()
                return False
            return not found.isdisjoint(networks)
        return admit

    def lookup(self, peer: str, name: str) -> str | None:
        """The virtual IP `name` stands for on the networks of the container at `peer`."""
        networks = self._members.get(peer, frozenset())
        for network, vip in self._names.get(name, ()):
            if network in networks:
                return vip
        return None

    def knows(self, peer: str) -> bool:
        return peer in self._members

    def relay_target(self, task_id: str, port: int) -> str | None:
        """The container address of a replica on this node in rotation, for a port its
        service serves."""
        return self._targets.get((task_id, port))

    async def refresh(self) -> None:
        """Reads the engine's networks now (or waits for the read under way)."""
        await asyncio.shield(self._wake_refresh())

    async def _read_members(self) -> None:
        wait = self._refreshed + REFRESH_MIN_S - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        try:
            self._members = await self._members_of()
        except Exception as err:  # the engine not answering must not stop routing
            log.warning("internal routing: cannot read the engine's networks: %s", err)
        self._refreshed = time.monotonic()

    def _wake_refresh(self) -> asyncio.Task[None]:
        """Starts a read of the engine's networks unless one is under way; returns it."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.create_task(self._read_members())
        return self._refreshing

    async def _refresh_often(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_EVERY_S)
            with contextlib.suppress(Exception):
                await self.refresh()

    # -- the node's addresses and name server -------------------------------------------------

    async def _addresses_for(self, vips: set[str]) -> list[str]:
        wanted = set(vips)
        if wanted and self._resolver:
            wanted.add(self._resolver)
        add, remove = wanted - self._addresses, self._addresses - wanted
        if not add and not remove:
            return []
        lines = [f"address add {a}/32 dev lo" for a in sorted(add)]
        lines += [f"address del {a}/32 dev lo" for a in sorted(remove)]
        error = await self._run_ip(lines)
        self._addresses = (self._addresses | add) - remove
        return [f"virtual IPs: {error}"] if error else []

    async def _serve_names(self) -> list[str]:
        if self._dns is not None or not self._resolver or self._resolver not in self._addresses:
            return []
        server = NameServer(lookup=self._lookup_slowly, upstreams=upstreams(
            exclude=self._resolver))
        try:
            await server.start(self._resolver)
        except OSError as err:  # the caller logs it once, and applies again until it works
            return [f"cannot serve names on {self._resolver}:53: {err}"]
        self._dns = server
        return []

    async def _lookup_slowly(self, peer: str, name: str) -> str | None:
        if not self.knows(peer):
            await self.refresh()
        return self.lookup(peer, name)

    async def close(self) -> None:
        """Stops serving and takes the addresses back off lo; idempotent."""
        for task in (self._refresher, self._refreshing):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._refresher = self._refreshing = None
        if self._dns is not None:
            await self._dns.close()
            self._dns = None
        for mesh in self._meshes.values():
            await mesh.close()
        self._meshes.clear()
        await self._addresses_for(set())


async def _ip_batch(lines: list[str]) -> str:
    """Runs `ip -force -batch -` (every line tried); returns its complaints, "" when none."""
    script = "\n".join(lines).encode() + b"\n"
    try:
        # In a thread: uvloop's subprocess pipes have failed to write a short stdin here.
        done = await asyncio.to_thread(
            subprocess.run, ["ip", "-force", "-batch", "-"], input=script,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"cannot run ip: {err}"
    # An address already there (another agent on this host put it there) or already gone is
    # what reconciling expects.
    expected = ("File exists", "Address already assigned", "Cannot assign requested address",
                "Command failed")
    complaints = [line for line in done.stderr.decode(errors="replace").splitlines()
                  if line.strip() and not any(e in line for e in expected)]
    return "; ".join(complaints)
