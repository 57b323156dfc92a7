"""podium.agent.kernelmesh: the nft script it renders (pure, no root), and the rules at work in
network namespaces this test creates (root and nft; marked `engine`, run by deploy/check.sh).

The real test builds three namespaces joined by veth pairs: client (10.251.1.2) -> proxy
(10.251.1.1 | 10.251.2.1) -> backend (10.251.2.2, two asyncio servers that answer their name).
KernelMesh runs in the proxy namespace in a subprocess fed one JSON line per apply. Everything is
deleted in a finalizer, whatever happens.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from podium.agent.kernelmesh import MASQ_MARK, KernelMesh, count_connections, render
from podium.agent.meshspec import Endpoint, ListenerSpec


def spec(*endpoints: tuple[str, str, int], balance: str = "least-connections",
         proxy_protocol: bool = False) -> ListenerSpec:
    return ListenerSpec(endpoints=tuple(Endpoint(*e) for e in endpoints), balance=balance,
                        proxy_protocol=proxy_protocol)


# -- the script (pure) ---------------------------------------------------------------------------

def test_script_flushes_and_rebuilds_its_own_table_only() -> None:
    script, errors = render({8080: spec(("t1", "10.0.0.1", 30001), ("t2", "10.0.0.2", 30002))})
    assert errors == []
    lines = script.splitlines()
    assert lines[:3] == ["table ip podium_mesh", "delete table ip podium_mesh",
                         "table ip podium_mesh {"]
    # No other table is named anywhere in the script.
    assert {line.rstrip(" {").split()[-1] for line in lines
            if line.startswith(("table", "delete"))} == {"podium_mesh"}
    assert "elements = { 0 : 10.0.0.1 . 30001, 1 : 10.0.0.2 . 30002 }" in script
    assert "typeof numgen inc mod 2 : ip daddr . tcp dport" in script
    for hook in ("prerouting priority dstnat", "output priority -100",
                 "postrouting priority srcnat"):
        assert f"type nat hook {hook}; policy accept;" in script
    assert f"meta mark & {MASQ_MARK:#010x} == {MASQ_MARK:#010x} masquerade" in script


def test_balance_picks_numgen_and_loopback_is_left_out_by_default() -> None:
    script, _ = render({80: spec(("a", "10.0.0.1", 1), balance="round-robin"),
                        81: spec(("a", "10.0.0.1", 1), ("b", "10.0.0.2", 2), ("c", "10.0.0.3", 3))})
    rules = [line.strip() for line in script.splitlines() if "dnat" in line]
    assert rules == [
        "tcp dport 80 fib daddr type local meta mark set meta mark | 0x00800000 dnat ip addr . "
        "port to numgen inc mod 1 map @ep_80",
        "tcp dport 81 fib daddr type local meta mark set meta mark | 0x00800000 dnat ip addr . "
        "port to numgen random mod 3 map @ep_81",
        "ip daddr != 127.0.0.0/8 tcp dport 80 fib daddr type local meta mark set meta mark | "
        "0x00800000 dnat ip addr . port to numgen inc mod 1 map @ep_80",
        "ip daddr != 127.0.0.0/8 tcp dport 81 fib daddr type local meta mark set meta mark | "
        "0x00800000 dnat ip addr . port to numgen random mod 3 map @ep_81",
    ]
    looped, _ = render({80: spec(("a", "10.0.0.1", 1))}, loopback=True)
    assert "127.0.0.0/8" not in looped


def test_zero_endpoints_no_rule_and_nothing_wanted_deletes_the_table() -> None:
    script, errors = render({8080: spec(), 8081: spec(("a", "10.0.0.1", 9))})
    assert errors == []
    assert "8080" not in script and "ep_8081" in script
    assert render({})[0] == "table ip podium_mesh\ndelete table ip podium_mesh\n"
    assert render({8080: spec()})[0] == render({})[0]


def test_what_the_kernel_cannot_serve_is_reported() -> None:
    script, errors = render({
        80: spec(("a", "node-a.example", 1), ("b", "fd00::1", 2), ("c", "10.0.0.3", 3)),
        81: spec(("a", "10.0.0.1", 1), proxy_protocol=True),
    })
    assert len(errors) == 3
    assert "not an IPv4 address" in errors[0] and "PROXY protocol" in errors[2]
    assert "elements = { 0 : 10.0.0.3 . 3 }" in script and "81" not in script


def test_conntrack_counts_per_port_and_endpoint() -> None:
    table = "\n".join([
        "ipv4 2 tcp 6 431999 ESTABLISHED src=10.9.0.5 dst=10.9.0.1 sport=5000 dport=8080 "
        "src=10.0.0.1 dst=10.9.0.1 sport=30001 dport=5000 [ASSURED] mark=0 use=1",
        "ipv4 2 tcp 6 431999 ESTABLISHED src=10.9.0.6 dst=10.9.0.1 sport=5001 dport=8080 "
        "src=10.0.0.1 dst=10.9.0.1 sport=30001 dport=5001 [ASSURED] mark=0 use=1",
        "ipv4 2 tcp 6 100 TIME_WAIT src=10.9.0.6 dst=10.9.0.1 sport=5002 dport=8080 "
        "src=10.0.0.2 dst=10.9.0.1 sport=30002 dport=5002 [ASSURED] mark=0 use=1",
        "ipv4 2 udp 17 20 src=10.9.0.6 dst=10.9.0.1 sport=53 dport=8080 src=10.0.0.2 "
        "dst=10.9.0.1 sport=30002 dport=53 mark=0 use=1",
    ])
    wanted = {8080: spec(("t1", "10.0.0.1", 30001), ("t2", "10.0.0.2", 30002)), 9090: spec()}
    assert count_connections(wanted, table) == {8080: {"t1": 2, "t2": 0}, 9090: {}}


def test_requests_are_not_counted_so_they_read_as_missing() -> None:
    """The kernel path counts no requests: no key at all (the manager's "missing"), never a 0
    that would read as an idle replica."""
    assert KernelMesh().requests() == {}


# -- the rules at work (root, nft, network namespaces) -------------------------------------------

BACKEND = """
import asyncio, sys
async def main():
    async def serve(name, reader, writer):
        writer.write(name.encode() + b"\\n")
        await writer.drain()
        writer.close()
    servers = [await asyncio.start_server(lambda r, w, n=n: serve(n, r, w), "10.251.2.2", p)
               for n, p in (("b1", 9001), ("b2", 9002))]
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""
MESH = """
import asyncio, json, sys
from podium.agent.kernelmesh import KernelMesh
from podium.agent.meshspec import Endpoint, ListenerSpec
async def main():
    mesh = KernelMesh()
    for line in sys.stdin:
        if line.strip() == "close":
            await mesh.close()
            print("[]", flush=True)
            continue
        wanted = {int(port): ListenerSpec(endpoints=tuple(Endpoint(*e) for e in s["endpoints"]),
                                          balance=s["balance"])
                  for port, s in json.loads(line).items()}
        print(json.dumps(await mesh.apply(wanted)), flush=True)
asyncio.run(main())
"""
CLIENT = """
import socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for _ in range(n):
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            print(sock.makefile().readline().strip() or "eof", flush=True)
    except OSError as exc:
        print(type(exc).__name__, flush=True)
"""


@dataclass
class Netns:
    prefix: str

    def name(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    def run(self, role: str, *args: str) -> str:
        return subprocess.run(["ip", "netns", "exec", self.name(role), *args], check=True,
                              capture_output=True, text=True, timeout=30).stdout

    def clients(self, role: str, host: str, n: int = 40) -> Counter[str]:
        return Counter(self.run(role, sys.executable, "-c", CLIENT, host, "8080",
                                str(n)).split())


@pytest.fixture(scope="session")
def nft() -> None:
    """nft present (installed with apt-get when missing, as the project's scripts do) and root."""
    assert os.geteuid() == 0, "the kernel mesh test needs root"
    if shutil.which("nft") is None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, timeout=300)
        subprocess.run(["apt-get", "install", "-y", "-qq", "nftables"], env=env, check=True,
                       timeout=600)
    assert shutil.which("nft"), "nft missing after apt-get install nftables"


@pytest.fixture
def netns(nft: None) -> Iterator[Netns]:
    ns = Netns(f"pkm{os.getpid()}")
    tag = str(os.getpid() % 100000)

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, timeout=30)

    try:
        for role in ("c", "p", "b"):
            ip("netns", "add", ns.name(role))
            ip("-n", ns.name(role), "link", "set", "lo", "up")
        for side, (near, far), (near_ip, far_ip) in (
                ("c", ("c", "p"), ("10.251.1.2/24", "10.251.1.1/24")),
                ("b", ("b", "p"), ("10.251.2.2/24", "10.251.2.1/24"))):
            a, b = f"pk{side}{tag}a", f"pk{side}{tag}b"
            ip("link", "add", a, "netns", ns.name(near), "type", "veth", "peer", "name", b,
               "netns", ns.name(far))
            ip("-n", ns.name(near), "addr", "add", near_ip, "dev", a)
            ip("-n", ns.name(far), "addr", "add", far_ip, "dev", b)
            ip("-n", ns.name(near), "link", "set", a, "up")
            ip("-n", ns.name(far), "link", "set", b, "up")
        ns.run("p", "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        yield ns
    finally:
        for role in ("c", "p", "b"):
            subprocess.run(["ip", "netns", "delete", ns.name(role)], check=False, timeout=30,
                           stderr=subprocess.DEVNULL)


def _start(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            start_new_session=True)


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()


@pytest.mark.engine
def test_dnat_spreads_follows_the_endpoint_set_and_cleans_up(netns: Netns) -> None:
    backend = _start(["ip", "netns", "exec", netns.name("b"), sys.executable, "-c", BACKEND])
    mesh = _start(["ip", "netns", "exec", netns.name("p"), sys.executable, "-c", MESH])
    try:
        assert backend.stdout is not None and backend.stdout.readline().strip() == "ready"

        def apply(wanted: object) -> list[str]:
            assert mesh.stdin is not None and mesh.stdout is not None
            mesh.stdin.write(json.dumps(wanted) if wanted != "close" else "close")
            mesh.stdin.write("\n")
            mesh.stdin.flush()
            result: list[str] = json.loads(mesh.stdout.readline())
            return result

        both = [["t1", "10.251.2.2", 9001], ["t2", "10.251.2.2", 9002]]
        assert apply({"8080": {"endpoints": both, "balance": "round-robin"}}) == []
        # From another host (prerouting): round-robin alternates exactly.
        assert netns.clients("c", "10.251.1.1") == {"b1": 20, "b2": 20}
        # From the node itself to its own address (output chain); random spreads over both.
        assert apply({"8080": {"endpoints": both, "balance": "least-connections"}}) == []
        seen = netns.clients("p", "10.251.1.1")
        assert set(seen) == {"b1", "b2"} and sum(seen.values()) == 40
        # An endpoint removed: new connections only go to the other.
        assert apply({"8080": {"endpoints": both[1:], "balance": "round-robin"}}) == []
        assert netns.clients("c", "10.251.1.1") == {"b2": 40}
        assert netns.clients("p", "10.251.1.1", 10) == {"b2": 10}
        # Zero endpoints: no rule, nothing listens, connections are refused.
        assert apply({"8080": {"endpoints": [], "balance": "round-robin"}}) == []
        assert netns.clients("c", "10.251.1.1", 3) == {"ConnectionRefusedError": 3}
        assert apply({"8080": {"endpoints": both, "balance": "round-robin"}}) == []
        assert "podium_mesh" in netns.run("p", "nft", "list", "tables")
        assert apply("close") == []
        assert "podium_mesh" not in netns.run("p", "nft", "list", "tables")
        assert netns.clients("c", "10.251.1.1", 3) == {"ConnectionRefusedError": 3}
        assert apply("close") == []  # idempotent
    finally:
        _stop(mesh)
        _stop(backend)
