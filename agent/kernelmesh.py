"""The routing mesh's kernel data path: nftables DNAT rules kept in step with the endpoint set.

An opt-in alternative to the asyncio proxy (`podium agent --mesh kernel`), with the same surface
as `podium.agent.proxy.Mesh`:

- `KernelMesh(nft="nft", loopback=False, conntrack_stats=False)`.
- `await apply({port: ListenerSpec})` renders ONE nft script for the whole wanted set and loads it
  with `nft -f -`, which runs it as one transaction: the table `ip podium_mesh` is declared,
  deleted and rebuilt, so the kernel switches from the old rule set to the new one atomically and
  nothing outside that table is ever read or changed. Returns errors instead of raising (nft
  missing, a rejected script, endpoints or settings the kernel path cannot serve).
- `stats()`: published port -> endpoint key -> open connections. Empty dicts (one per port)
  unless `conntrack_stats=True`, which parses /proc/net/nf_conntrack on every call: that is a
  read of the whole table of the namespace (hundreds of milliseconds at 10^5 entries), too dear to
  do by default on the event loop.
- `requests()`: always `{}`. The kernel path counts no requests: the agent's load reports say
  so (`mesh_uncounted`) and the manager treats this node's figures as missing (HTTP requests on a
  kept-alive connection are invisible to DNAT; new connections could be counted per endpoint with
  an nft counter rule in postrouting, read once a second, but that is not done yet).
- `await close()` deletes the table (idempotent). Connections already NATed carry on: their
  translation lives in their conntrack entries, not in the rules.

What the rules do, per published port with at least one endpoint:
- prerouting (traffic from other hosts) and output (connections made on the node itself): a TCP
  packet to a *local* address (`fib daddr type local`, so traffic passing through to other hosts
  is never touched) on the port is DNATed to `numgen inc mod N` (balance "round-robin") or
  `numgen random mod N` (anything else: the kernel has no per-endpoint connection counts at DNAT
  time, so "least-connections" becomes a uniform random spread) looked up in the map `ep_<port>`
  (index : endpoint address . port). The packet gets the mark bit `MASQ_MARK`;
- postrouting masquerades marked packets, so replies come back through this node.
Only the first packet of a connection passes NAT chains; the rest follow its conntrack entry. So
an endpoint removed from the map keeps its existing connections (they drain), and new ones go to
the remaining endpoints. A port with zero endpoints gets no rule: nothing listens on it and
connections are refused.

Limitations (the reasons to keep the asyncio path the default):
- No retry: the kernel cannot try another endpoint when one refuses or times out. What protects
  clients is the manager taking unready replicas out of the endpoint set (readiness probes) and
  this agent applying that promptly; until then 1/N of new connections to a dead replica fail.
- No PROXY protocol (a port asking for it is reported and left without rules) and no
  least-connections (random instead).
- IPv4 only: endpoints whose host is not an IPv4 literal are reported and left out.
- Loopback clients: connecting to 127.0.0.1:port is not supported by default (local processes
  use the node's own address). DNAT of a 127/8 destination to another host needs
  `net.ipv4.conf.all.route_localnet=1`, a machine-wide setting with security consequences that
  this class never changes: with `loopback=True` the output rule covers 127/8 too and apply
  reports an error while that sysctl is 0.
- Forwarding from other hosts needs `net.ipv4.ip_forward=1` (apply reports it when 0), and a
  filter FORWARD policy of DROP elsewhere (Docker sets one) drops the forwarded traffic: allow it
  there, e.g. `iptables -I DOCKER-USER -m conntrack --ctstate DNAT -j ACCEPT`.
- An endpoint on this same node is reached at its published host port on the node address: the
  engine's own DNAT does not run again for that connection (one DNAT per hook), so the engine's
  userland proxy serves it.
- Every connection costs a conntrack entry, kept 120 s in TIME_WAIT by default: at 10^4 new
  connections/s size `nf_conntrack_max` or shorten `nf_conntrack_tcp_timeout_time_wait`.
- Masquerade keeps the client's source port and TCP timestamps: when a backend still holds
  TIME_WAIT for the same (node address, port) tuple from a connection with another timestamp
  base (the node's own connections, or another client's), it drops the SYN (PAWS) and that
  client waits ~1 s for the retransmit. Rare at modest rates; at 10^4 new connections/s from
  several sources, expect stalls (bench/lb.py saw them, and keeps its proxies on another source
  address for that reason).
"""

from __future__ import annotations

import asyncio
import ipaddress
import pathlib
from collections.abc import Mapping

from podium.agent.meshspec import ListenerSpec

TABLE = "podium_mesh"
FAMILY = "ip"
MASQ_MARK = 0x00800000  # the bit set on packets this table DNATed; postrouting masquerades them
NFT_TIMEOUT = 10.0  # seconds one `nft -f -` may take
CONNTRACK = pathlib.Path("/proc/net/nf_conntrack")
_OPEN_STATES = frozenset({"SYN_SENT", "SYN_RECV", "ESTABLISHED"})


def _endpoint_errors(port: int, spec: ListenerSpec) -> tuple[list[str], list[str]]:
    """The map elements (`addr . port`) of `spec` that the kernel path can serve, and errors."""
    elements: list[str] = []
    errors: list[str] = []
    for endpoint in spec.endpoints:
        try:
            addr = ipaddress.IPv4Address(endpoint.host)
        except ValueError:
            errors.append(f"port {port}: endpoint {endpoint.key} at {endpoint.host!r} is not an "
                          "IPv4 address; the kernel mesh leaves it out")
            continue
        if not 0 < endpoint.port < 65536:
            errors.append(f"port {port}: endpoint {endpoint.key} has port {endpoint.port}")
            continue
        elements.append(f"{addr} . {endpoint.port}")
    return elements, errors


def render(wanted: Mapping[int, ListenerSpec], *, loopback: bool = False) -> tuple[str, list[str]]:
    """The nft script that makes table `ip podium_mesh` serve exactly `wanted`, and the errors
    for what it cannot serve. Pure: the same input gives the same script."""
    errors: list[str] = []
    maps: list[str] = []
    pre: list[str] = []
    out: list[str] = []
    for port, spec in sorted(wanted.items()):
        if not 0 < port < 65536:
            errors.append(f"port {port}: not a TCP port")
            continue
        if spec.proxy_protocol:
            errors.append(f"port {port}: the kernel mesh cannot send PROXY protocol headers; "
                          "port left without rules (use --mesh asyncio)")
            continue
        elements, bad = _endpoint_errors(port, spec)
        errors += bad
        if not elements:
            continue  # no rule: connections are refused
        n = len(elements)
        spread = "inc" if spec.balance == "round-robin" else "random"
        body = ", ".join(f"{i} : {element}" for i, element in enumerate(elements))
        maps.append(f"\tmap ep_{port} {{\n"
                    f"\t\ttypeof numgen inc mod {n} : ip daddr . tcp dport\n"
                    f"\t\telements = {{ {body} }}\n"
                    "\t}")
        action = (f"tcp dport {port} fib daddr type local meta mark set meta mark | "
                  f"{MASQ_MARK:#010x} dnat ip addr . port to numgen {spread} mod {n} map "
                  f"@ep_{port}")
        pre.append(f"\t\t{action}")
        out.append(f"\t\t{action}" if loopback else f"\t\tip daddr != 127.0.0.0/8 {action}")
    # Declaring the table first makes the delete valid when it does not exist yet; both, and the
    # rebuild, are one transaction.
    lines = [f"table {FAMILY} {TABLE}", f"delete table {FAMILY} {TABLE}"]
    if maps:
        lines += [
            f"table {FAMILY} {TABLE} {{",
            *maps,
            "\tchain prerouting {",
            "\t\ttype nat hook prerouting priority dstnat; policy accept;",
            *pre,
            "\t}",
            "\tchain output {",
            "\t\ttype nat hook output priority -100; policy accept;",
            *out,
            "\t}",
            "\tchain postrouting {",
            "\t\ttype nat hook postrouting priority srcnat; policy accept;",
            f"\t\tmeta mark & {MASQ_MARK:#010x} == {MASQ_MARK:#010x} masquerade",
            "\t}",
            "}",
        ]
    return "\n".join(lines) + "\n", errors


def _sysctl(name: str) -> str | None:
    try:
        return pathlib.Path("/proc/sys", *name.split(".")).read_text().strip()
    except OSError:
        return None


def count_connections(wanted: Mapping[int, ListenerSpec], conntrack: str
                      ) -> dict[int, dict[str, int]]:
    """Published port -> endpoint key -> connections opening or open, from the text of
    /proc/net/nf_conntrack: an entry counts for (port, endpoint) when its original destination
    port is the published port and its reply comes from the endpoint's address and port."""
    keys: dict[tuple[int, str, int], str] = {}
    counts: dict[int, dict[str, int]] = {}
    for port, spec in wanted.items():
        counts[port] = {e.key: 0 for e in spec.endpoints}
        for e in spec.endpoints:
            keys[(port, e.host, e.port)] = e.key
    for line in conntrack.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[2] != "tcp" or fields[5] not in _OPEN_STATES:
            continue
        values = [f.split("=", 1) for f in fields[6:] if "=" in f]
        dports = [v for k, v in values if k == "dport"]
        srcs = [v for k, v in values if k == "src"]
        sports = [v for k, v in values if k == "sport"]
        if len(dports) < 2 or len(srcs) < 2 or len(sports) < 2:
            continue
        with_port = (int(dports[0]), srcs[1], int(sports[1]))
        key = keys.get(with_port)
        if key is not None:
            counts[with_port[0]][key] += 1
    return counts


class KernelMesh:
    """All published ports of an agent as nftables DNAT rules, reconciled by `apply`."""

    def __init__(self, *, nft: str = "nft", loopback: bool = False,
                 conntrack_stats: bool = False) -> None:
        self.nft = nft
        self.loopback = loopback
        self.conntrack_stats = conntrack_stats
        self._wanted: dict[int, ListenerSpec] = {}
        self._lock = asyncio.Lock()

    async def apply(self, wanted: Mapping[int, ListenerSpec]) -> list[str]:
        """Loads the rules for exactly `wanted` in one transaction; returns errors, never raises
        for them. When nft fails the previous rules stay in force (the transaction is undone)."""
        script, errors = render(wanted, loopback=self.loopback)
        async with self._lock:
            error = await self._nft(script)
            if error:
                return [*errors, error]
            self._wanted = dict(wanted)
        serving = any(spec.endpoints for spec in wanted.values())
        if serving and _sysctl("net.ipv4.ip_forward") == "0":
            errors.append("net.ipv4.ip_forward is 0: connections from other hosts to endpoints "
                          "on other nodes are dropped")
        if serving and self.loopback and _sysctl("net.ipv4.conf.all.route_localnet") != "1":
            errors.append("loopback clients need net.ipv4.conf.all.route_localnet=1 (it is not "
                          "set): their connections to other nodes fail")
        return errors

    async def _nft(self, script: str) -> str | None:
        try:
            proc = await asyncio.create_subprocess_exec(
                self.nft, "-f", "-", stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        except FileNotFoundError:
            return (f"kernel mesh: {self.nft!r} not found: install the Debian package nftables "
                    "(or run the agent with --mesh asyncio)")
        except OSError as exc:
            return f"kernel mesh: cannot run {self.nft!r}: {exc}"
        try:
            async with asyncio.timeout(NFT_TIMEOUT):
                _, stderr = await proc.communicate(script.encode())
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return f"kernel mesh: nft took more than {NFT_TIMEOUT:g} s; killed"
        if proc.returncode != 0:
            return f"kernel mesh: nft failed ({proc.returncode}): {stderr.decode().strip()}"
        return None

    def stats(self) -> dict[int, dict[str, int]]:
        """Published port -> endpoint key -> open connections (see the module docstring: empty
        dicts unless `conntrack_stats`). Ports no longer wanted are not shown."""
        if self.conntrack_stats:
            try:
                return count_connections(self._wanted, CONNTRACK.read_text())
            except OSError:
                pass
        return {port: {} for port in self._wanted}

    def requests(self) -> dict[int, dict[str, int]]:
        """Requests forwarded per port and endpoint: none counted here (see the module
        docstring), so no key at all, which the manager reads as missing figures, not as 0."""
        return {}

    async def close(self) -> None:
        """Deletes the table; idempotent. Connections already NATed carry on."""
        async with self._lock:
            self._wanted = {}
            await self._nft(f"table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n")

    async def __aenter__(self) -> KernelMesh:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
