"""Benchmark: the routing mesh's data path (podium.agent.proxy) against HAProxy, on one machine.

    .venv/bin/python bench/lb.py [--json] [--duration S] [--rounds N] [--warmup S]
                                 [--threads N] [--connections N] [--pace-ms MS] [--no-netns]

In one run the bench starts two nginx backends on 127.0.0.1 (a tiny config in a temp dir, each
answering a 3-byte static body; busybox httpd when nginx is missing), then measures with wrk
(`wrk -t2 -c50 -d5s --latency` by default) requests/s and p50/p99 latency of:

- direct:  straight to one backend (the floor);
- haproxy: HAProxy in tcp mode, round-robin over both backends: the baseline, with its default
  threads (one per core); and again with `nbthread 1` (`haproxy_1t_*`), one event loop like the
  Podium listener;
- podium:  the agent's asyncio mesh in a subprocess, on uvloop when installed, else on asyncio's
  default loop, as the agent runs it: in its mesh worker processes (podium.agent.meshpool, one
  per core up to 4), least-connections (`podium_*`) and round-robin (`podium_rr_*`); and in one
  event loop, the agent's own (`--mesh-workers 0`, the previous design: `podium_1p_*`);
- podium kernel (nftables): podium.agent.kernelmesh's DNAT rules, `numgen inc` (round-robin)
  over both backends (`podium_kernel_*`; not with --no-netns);

each with keep-alive connections and with one new connection per request (`Connection: close`),
saturated (each wrk connection sends its next request as soon as it has an answer) and paced
(`*_paced`: each waits --pace-ms, 10 ms, first, so every target serves the same ~4.7k req/s:
the latency a proxy adds to a request, without the queueing that saturation adds in proportion
to a target's slowness).
All targets run side by side and are measured in turns, in a rotating order, --rounds times (3);
each figure is the median of its rounds, so that a busy spell of a shared machine hits every
target alike rather than whichever ran during it. It prints a table with the ratios to HAProxy
and the goals (>= 0.9 keep-alive, >= 0.7 new connection, p99 at most 1 ms over HAProxy's,
saturated and paced); with
--json, one JSON object whose keys end in their unit. The proxies' CPU use over each run is
shown too (percent of one core, summed over a proxy's processes).

Run as root, everything runs in three network namespaces of its own (`ip netns`), deleted at the
end, joined by veth pairs as separate hosts would be: client (wrk, 10.252.1.2) -> proxy
(10.252.1.1 | 10.252.2.1: HAProxy, the Podium listeners and the kernel rules) -> backend (both
nginx, 10.252.2.2). A kernel DNAT path needs its clients to come from another namespace (or
host); every row crosses the same two veth hops, and "direct" is routed through the proxy
namespace (ip_forward) without any proxy. The kernel rules load conntrack in the proxy namespace,
for every row alike, as on any Docker node; there its TIME_WAIT timeout is cut to 2 s
(`nf_conntrack_tcp_timeout_time_wait`, per namespace) so that ~20k new connections/s stay far
below the 262,144 entries of the machine-wide limit. The client and proxy namespaces reuse
TIME_WAIT ports for their outgoing connections (`tcp_tw_reuse=1`, what loopback gets by default):
without it wrk's connect() stalls once its ports fill with TIME_WAIT sockets. The root
namespace's conntrack table is never used: where Docker's iptables rules load it there, a full
table makes the kernel drop packets for every process on the machine, and other work's sockets
neither disturb nor share our ports.
--no-netns measures in the current namespace instead, everything on 127.0.0.1 and without the
kernel row (the layout of earlier runs: compare ratios, not req/s, across the two layouts).

Missing nginx, haproxy or wrk are installed with apt-get (quietly; needs root). Every process the
bench starts runs in its own session and is stopped (SIGTERM, then SIGKILL) when it ends, however
it ends. Durations are bounded (--duration and --warmup at most 60 s, --rounds at most 10): the
run takes 7 targets x 4 modes x (warmup + rounds x duration) plus wrk's own start-up, about
9 minutes by default.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pathlib
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import NoReturn

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from bench._proc import tree_cpu_seconds
from bench._wrk import CLOSE, PACE_SCRIPT, parse

HOST = "127.0.0.1"
# The three-namespace layout: (client-side, proxy-side) addresses of each link.
CLIENT_NET = ("10.252.1.2", "10.252.1.1")
BACKEND_NET = ("10.252.2.2", "10.252.2.1")
PROXY_SOURCE = "10.252.2.3"  # the userspace proxies' source address (see make_netns)
PACKAGES = {"nginx": "nginx", "haproxy": "haproxy", "wrk": "wrk", "nft": "nftables"}
# Saturated: every wrk connection sends its next request as soon as it has an answer. Paced: it
# waits PACE_MS first (a wrk script's delay()), which holds every target to the same rate, far
# below what any of them can serve, so latency is that of a request, not of a queue.
MODES = ("keepalive", "close", "keepalive_paced", "close_paced")
NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {root}/nginx-{port}.pid;
error_log {root}/nginx-{port}.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    client_body_temp_path {root}/tmp; proxy_temp_path {root}/tmp; fastcgi_temp_path {root}/tmp;
    uwsgi_temp_path {root}/tmp; scgi_temp_path {root}/tmp;
    server {{
        listen {host}:{port} backlog=4096;
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""
HAPROXY_CONF = """\
global
    maxconn 8000
{threads}defaults
    mode tcp
    timeout connect 1s
    timeout client 30s
    timeout server 30s
listen lb
    bind {host}:{port}
    balance roundrobin
    server b1 {backend}:{b1}
    server b2 {backend}:{b2}
"""
# The Podium side: run as `python bench/lb.py --serve PORT B1,B2 BALANCE LISTEN BACKEND WORKERS`.
KINDS = ("direct", "haproxy", "haproxy_1t", "podium", "podium_rr", "podium_1p", "podium_kernel")
GOALS = {"keepalive_ratio": 0.9, "close_ratio": 0.7, "added_p99_ms": 1.0}
KERNEL_GOALS = {"keepalive_ratio": 1.0, "close_ratio": 1.0, "added_p99_ms": 1.0}


@dataclass(slots=True)
class Layout:
    """Where each side runs: `listen` is the proxies' address (wrk's target), `backend` the
    backends'; `client`/`server` prefix the commands of wrk and of the backends."""

    listen: str = HOST
    backend: str = HOST
    client: tuple[str, ...] = ()
    server: tuple[str, ...] = ()
    kernel: bool = False

    @classmethod
    def three_netns(cls, prefix: str) -> Layout:
        return cls(CLIENT_NET[1], BACKEND_NET[0], ("ip", "netns", "exec", f"{prefix}-c"),
                   ("ip", "netns", "exec", f"{prefix}-b"), True)

    def kinds(self) -> tuple[str, ...]:
        return KINDS if self.kernel else tuple(k for k in KINDS if k != "podium_kernel")


NET = Layout()


def _raise_interrupt(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((NET.listen, 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes] | None, what: str,
                   within: float = 10, host: str | None = None) -> None:
    deadline = time.monotonic() + within
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} during start-up")
        with socket.socket() as sock, contextlib.suppress(OSError):
            sock.settimeout(1)
            sock.connect((host or NET.listen, port))
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not listen on {port} within {within:g} s")
        time.sleep(0.05)


def ensure_tools() -> None:
    """Installs the Debian packages of missing tools (busybox stands in for a missing nginx)."""
    missing = [pkg for tool, pkg in PACKAGES.items() if shutil.which(tool) is None]
    if not missing:
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise SystemExit(f"missing {', '.join(missing)}: install them (apt-get, as root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command, limit in ((["apt-get", "update", "-qq"], 300),
                           (["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                             *missing], 600)):
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                       check=False, timeout=limit)
    for tool in ("haproxy", "wrk"):
        if shutil.which(tool) is None:
            raise SystemExit(f"could not install {tool} with apt-get")
    if shutil.which("nginx") is None and shutil.which("busybox") is None:
        raise SystemExit("neither nginx nor busybox could be installed")


class Processes:
    """Starts processes in their own sessions; stops every one of them on close."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, args: list[str], port: int,
              host: str | None = None) -> subprocess.Popen[bytes]:
        log = (self.root / f"{name}.log").open("wb")
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.procs.append(proc)
        try:
            wait_listening(port, proc, name, host=host)
        except RuntimeError as err:
            log_tail = (self.root / f"{name}.log").read_text()[-2000:]
            raise RuntimeError(f"{err}: {log_tail}") from None
        return proc

    def close(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
            # Whatever the session leader left behind (nginx's worker) goes with its group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


def start_backend(procs: Processes, port: int) -> None:
    root = procs.root
    if shutil.which("nginx"):
        (root / "tmp").mkdir(exist_ok=True)
        conf = root / f"nginx-{port}.conf"
        conf.write_text(NGINX_CONF.format(root=root, host=NET.backend, port=port))
        procs.start(f"nginx-{port}", [*NET.server, "nginx", "-e", str(root / f"nginx-{port}.log"),
                                      "-p", str(root), "-c", str(conf)], port, NET.backend)
    else:
        www = root / "www"
        www.mkdir(exist_ok=True)
        (www / "index.html").write_text("ok\n")
        procs.start(f"httpd-{port}", [*NET.server, "busybox", "httpd", "-f", "-p",
                                      f"{NET.backend}:{port}", "-h", str(www)], port, NET.backend)


@dataclass(slots=True)
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    proxy_cpu_pct: float | None




def wrk(target: tuple[str, int], mode: str, args: argparse.Namespace, pace: pathlib.Path,
        duration: float, pid: int | None = None) -> Result:
    """One wrk run; `pace` is the script of the paced modes."""
    host, port = target
    extra = CLOSE if mode.startswith("close") else []
    if mode.endswith("_paced"):
        extra = [*extra, "-s", str(pace)]
    command = [*NET.client, "wrk", f"-t{args.threads}", f"-c{args.connections}",
               f"-d{duration:g}s", "--latency", *extra, f"http://{host}:{port}/"]
    cpu_before = tree_cpu_seconds(pid) if pid else 0.0
    started = time.monotonic()
    out = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60,
                         check=True).stdout
    elapsed = time.monotonic() - started
    cpu = 100 * (tree_cpu_seconds(pid) - cpu_before) / elapsed if pid else None

    figures = parse(out)
    return Result(figures.rps, figures.p50_ms, figures.p99_ms, figures.errors, cpu)


def serve(port: int, backends: str, balance: str, listen: str, backend: str,
          workers: int) -> None:
    """The Podium side, in its own process, until SIGTERM: the agent's mesh, in `workers`
    processes (podium.agent.meshpool) or, with 0, in this process's event loop."""
    from podium.agent.meshpool import MeshPool
    from podium.agent.meshspec import Endpoint, ListenerSpec
    from podium.agent.proxy import Mesh, new_event_loop

    async def main() -> None:
        endpoints = tuple(Endpoint(f"b{i}", backend, int(p))
                          for i, p in enumerate(backends.split(",")))
        mesh = MeshPool(workers=workers, host=listen) if workers else Mesh(host=listen)
        async with mesh:
            errors = await mesh.apply({port: ListenerSpec(endpoints=endpoints, balance=balance)})
            if errors:
                raise SystemExit(f"mesh: {'; '.join(errors)}")
            stop = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
            print(f"listening on {port} ({type(asyncio.get_running_loop()).__module__}, "
                  f"{workers} workers)", flush=True)
            await stop.wait()

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(main())


def loop_name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def apply_kernel(port: int | None, backends: list[int]) -> None:
    """Loads (port given) or deletes (None) the kernel mesh's rules in this namespace."""
    from podium.agent.kernelmesh import KernelMesh
    from podium.agent.meshspec import Endpoint, ListenerSpec

    async def main() -> list[str]:
        mesh = KernelMesh()
        if port is None:
            await mesh.close()
            return []
        endpoints = tuple(Endpoint(f"b{i}", NET.backend, p) for i, p in enumerate(backends))
        return await mesh.apply({port: ListenerSpec(endpoints=endpoints, balance="round-robin")})

    errors = asyncio.run(main())
    if errors:
        raise RuntimeError(f"kernel mesh: {'; '.join(errors)}")


def start_target(procs: Processes, kind: str,
                 backends: list[int]) -> tuple[tuple[str, int], int | None]:
    """Starts one target; returns its address and the pid of its proxy process (None: direct
    and the kernel path, which has no process of its own)."""
    if kind == "direct":
        return (NET.backend, backends[0]), None
    port = free_port()
    if kind == "podium_kernel":
        apply_kernel(port, backends)
        wait_listening(port, None, kind)
        return (NET.listen, port), None
    if kind.startswith("haproxy"):
        conf = procs.root / f"{kind}.cfg"
        threads = "    nbthread 1\n" if kind == "haproxy_1t" else ""
        conf.write_text(HAPROXY_CONF.format(host=NET.listen, backend=NET.backend, port=port,
                                            b1=backends[0], b2=backends[1], threads=threads))
        proc = procs.start(kind, ["haproxy", "-db", "-f", str(conf)], port)
    else:
        balance = "round-robin" if kind == "podium_rr" else "least-connections"
        workers = 0 if kind == "podium_1p" else mesh_workers()
        proc = procs.start(kind, [sys.executable, __file__, "--serve", str(port),
                                  ",".join(map(str, backends)), balance, NET.listen,
                                  NET.backend, str(workers)], port)
    return (NET.listen, port), proc.pid


def median(samples: list[Result]) -> Result:
    """Each figure's median over the rounds (errors: their sum)."""
    cpu = [s.proxy_cpu_pct for s in samples if s.proxy_cpu_pct is not None]
    return Result(statistics.median(s.rps for s in samples),
                  statistics.median(s.p50_ms for s in samples),
                  statistics.median(s.p99_ms for s in samples),
                  sum(s.errors for s in samples), statistics.median(cpu) if cpu else None)


def measure(args: argparse.Namespace) -> dict[str, Result]:
    """All targets run side by side (idle ones cost nothing) and are measured in turns, in a
    rotating order, `--rounds` times: a slow spell of the machine then hits every target alike
    instead of whichever happened to run during it. Figures are the medians over the rounds."""
    kinds = NET.kinds()
    samples: dict[str, list[Result]] = {f"{k}_{m}": [] for k in kinds for m in MODES}
    with tempfile.TemporaryDirectory(prefix="podium-bench-lb-") as tmp:
        root = pathlib.Path(tmp)
        pace = root / "pace.lua"
        pace.write_text(PACE_SCRIPT.format(ms=args.pace_ms))
        procs = Processes(root)
        try:
            backends = [free_port(), free_port()]
            for port in backends:
                start_backend(procs, port)
            targets = {kind: start_target(procs, kind, backends) for kind in kinds}
            for target, _ in targets.values():
                for mode in MODES:
                    if args.warmup:
                        wrk(target, mode, args, pace, args.warmup)
            for n in range(args.rounds):
                order = kinds[n % len(kinds):] + kinds[:n % len(kinds)]
                for mode in MODES:
                    for kind in order:
                        target, pid = targets[kind]
                        result = wrk(target, mode, args, pace, args.duration, pid)
                        samples[f"{kind}_{mode}"].append(result)
                        print(f"  round {n + 1}: {kind} {mode} {result.rps:,.0f} req/s",
                              file=sys.stderr)
        finally:
            procs.close()
            if NET.kernel:
                apply_kernel(None, [])
    return {name: median(runs) for name, runs in samples.items()}


def figures(results: dict[str, Result]) -> dict[str, float | int | str]:
    out: dict[str, float | int | str] = {}
    for name, r in results.items():
        out[f"{name}_rps"] = round(r.rps)
        out[f"{name}_p50_ms"] = round(r.p50_ms, 3)
        out[f"{name}_p99_ms"] = round(r.p99_ms, 3)
        out[f"{name}_errors_count"] = r.errors
        if r.proxy_cpu_pct is not None:
            out[f"{name}_proxy_cpu_pct"] = round(r.proxy_cpu_pct, 1)
    for kind in ("podium", "podium_rr", "podium_1p", "podium_kernel"):
        for base in ("haproxy", "haproxy_1t"):
            for mode in MODES:
                if f"{kind}_{mode}" not in results:
                    continue
                mine, theirs = results[f"{kind}_{mode}"], results[f"{base}_{mode}"]
                out[f"{kind}_to_{base}_{mode}_ratio"] = round(mine.rps / theirs.rps, 3)
                out[f"{kind}_over_{base}_{mode}_p99_ms"] = round(mine.p99_ms - theirs.p99_ms, 3)
    out["podium_loop_name"] = loop_name()
    out["podium_mesh_workers_count"] = mesh_workers()
    return out


def mesh_workers() -> int:
    """How many mesh workers the agent runs on this machine by default."""
    from podium.agent.main import default_workers

    return default_workers()


def goal_lines(fig: dict[str, float | int | str], base: str, kind: str = "podium",
               goals: dict[str, float] = GOALS) -> list[str]:
    """Throughput ratios at saturation; added p99 both at saturation and paced (equal load)."""
    def met(ok: bool) -> str:
        return "met" if ok else "MISSED"

    limit = goals["added_p99_ms"]
    lines = []
    for mode, goal in (("keepalive", goals["keepalive_ratio"]), ("close", goals["close_ratio"])):
        ratio = float(fig[f"{kind}_to_{base}_{mode}_ratio"])
        added = float(fig[f"{kind}_over_{base}_{mode}_p99_ms"])
        paced = float(fig[f"{kind}_over_{base}_{mode}_paced_p99_ms"])
        lines.append(f"  vs {base:<11}{mode:<10} ratio {ratio:.2f} (goal >= {goal}: "
                     f"{met(ratio >= goal)}); added p99 {added:+.2f} ms saturated, "
                     f"{paced:+.2f} ms paced (goal <= +{limit:g}: saturated "
                     f"{met(added <= limit)}, paced {met(paced <= limit)})")
    return lines


LABELS = {"direct": "direct (one nginx)", "haproxy": "haproxy tcp roundrobin",
          "haproxy_1t": "haproxy ... nbthread 1", "podium": "podium least_conn",
          "podium_rr": "podium round_robin", "podium_1p": "podium, agent's own loop",
          "podium_kernel": "podium kernel (nftables)"}


def table(results: dict[str, Result], fig: dict[str, float | int | str],
          args: argparse.Namespace, where: str) -> str:
    lines = [f"wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s, median of "
             f"{args.rounds} rounds (paced: each connection waits {args.pace_ms} ms before each "
             f"request); two {'nginx' if shutil.which('nginx') else 'busybox httpd'} backends "
             f"on {NET.backend} ({where}); {os.cpu_count()} cores shared by all; Podium on "
             f"{fig['podium_loop_name']}, {fig['podium_mesh_workers_count']} mesh workers",
             f"{'target':<26}{'mode':<16}{'req/s':>9}{'vs haproxy':>12}{'vs 1 thread':>12}"
             f"{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'proxy cpu %':>13}"]
    for mode in MODES:
        for kind in NET.kinds():
            r = results[f"{kind}_{mode}"]
            ratio = r.rps / results[f"haproxy_{mode}"].rps
            ratio_1t = r.rps / results[f"haproxy_1t_{mode}"].rps
            cpu = "" if r.proxy_cpu_pct is None else f"{r.proxy_cpu_pct:.0f}"
            lines.append(f"{LABELS[kind]:<26}{mode:<16}{r.rps:>9,.0f}{ratio:>11.2f}x"
                         f"{ratio_1t:>11.2f}x{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}{r.errors:>8}"
                         f"{cpu:>13}")
    lines.append("goals (podium least_conn, the agent's default mesh):")
    lines += goal_lines(fig, "haproxy") + goal_lines(fig, "haproxy_1t")
    lines.append("the same in the agent's own event loop (--mesh-workers 0, the previous design):")
    lines += goal_lines(fig, "haproxy", "podium_1p")
    if "podium_kernel_keepalive_rps" in fig:
        lines.append("goals (podium kernel):")
        lines += goal_lines(fig, "haproxy", "podium_kernel", KERNEL_GOALS)
    return "\n".join(lines)


def make_netns(prefix: str) -> None:
    """Client, proxy and backend namespaces joined by veth pairs (see the module docstring)."""
    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, timeout=30)

    for role in ("c", "p", "b"):
        ip("netns", "add", f"{prefix}-{role}")
        ip("-n", f"{prefix}-{role}", "link", "set", "lo", "up")
    tag = os.getpid() % 100000
    for role, (near, far) in (("c", CLIENT_NET), ("b", BACKEND_NET)):
        ours, theirs = f"lb{role}{tag}a", f"lb{role}{tag}b"
        ip("link", "add", ours, "netns", f"{prefix}-{role}", "type", "veth", "peer", "name",
           theirs, "netns", f"{prefix}-p")
        ip("-n", f"{prefix}-{role}", "addr", "add", f"{near}/24", "dev", ours)
        ip("-n", f"{prefix}-p", "addr", "add", f"{far}/24", "dev", theirs)
        ip("-n", f"{prefix}-{role}", "link", "set", ours, "up")
        ip("-n", f"{prefix}-p", "link", "set", theirs, "up")
        ip("-n", f"{prefix}-{role}", "route", "add", "default", "via", far)
    # The proxies' own connections leave from a second address (PROXY_SOURCE), the kernel path's
    # masqueraded ones from the first (masquerade takes the primary address): they carry TCP
    # timestamps of different bases, and a backend holding TIME_WAIT for a tuple reused with an
    # older timestamp drops the SYN (PAWS): the client then waits 1 s for its retransmit (a
    # stall wrk's latency does not show, only its req/s). Sharing one address, the kernel row
    # measured right after the HAProxy rows ran at ~0.15x instead of ~1.5x.
    ip("-n", f"{prefix}-p", "addr", "add", f"{PROXY_SOURCE}/24", "dev", f"lbb{tag}b")
    ip("-n", f"{prefix}-p", "route", "replace", f"{BACKEND_NET[1].rsplit('.', 1)[0]}.0/24", "dev",
       f"lbb{tag}b", "src", PROXY_SOURCE)
    # TIME_WAIT reuse for outgoing connections (wrk's, the proxies'): without it, at ~15k new
    # connections/s the client's 28k ephemeral ports fill with TIME_WAIT sockets (60 s each) and
    # every connect() scans them for a free port: HAProxy fell from 11k to 0.9k req/s within
    # 15 s, with no drop or retransmit in any counter. Loopback gets this reuse by default
    # (tcp_tw_reuse=2), so the single-namespace layout never showed it.
    for role, setting in (("c", "net.ipv4.tcp_tw_reuse=1"), ("p", "net.ipv4.tcp_tw_reuse=1"),
                          ("p", "net.ipv4.ip_forward=1"),
                          ("p", "net.netfilter.nf_conntrack_tcp_timeout_time_wait=2")):
        subprocess.run(["ip", "netns", "exec", f"{prefix}-{role}", "sysctl", "-q", "-w", setting],
                       check=False, timeout=30)


def in_own_netns(argv: list[str]) -> int:
    """Runs this bench again inside the proxy namespace of a new three-namespace layout; deletes
    the namespaces after."""
    prefix = f"pblb{os.getpid()}"
    inner: subprocess.Popen[bytes] | None = None
    try:
        make_netns(prefix)
        inner = subprocess.Popen(["ip", "netns", "exec", f"{prefix}-p", sys.executable, __file__,
                                  "--in-netns", prefix, *argv], start_new_session=True)
        return inner.wait()
    finally:
        if inner is not None and inner.poll() is None:
            # Its own SIGTERM handler stops what it started.
            inner.terminate()
            try:
                inner.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(inner.pid, signal.SIGKILL)
                inner.wait(timeout=10)
        for role in ("c", "p", "b"):
            subprocess.run(["ip", "netns", "delete", f"{prefix}-{role}"], check=False,
                           timeout=30, stderr=subprocess.DEVNULL)


def main() -> int:
    global NET
    if len(sys.argv) == 8 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6],
              int(sys.argv[7]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per figure")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of wrk before all")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections")
    parser.add_argument("--pace-ms", type=int, default=10,
                        help="paced modes: each connection's wait before each request")
    parser.add_argument("--no-netns", action="store_true",
                        help="measure in the current network namespace")
    parser.add_argument("--in-netns", metavar="PREFIX", help=argparse.SUPPRESS)
    argv = sys.argv[1:]
    args = parser.parse_args(argv)
    if not (1 <= args.duration <= 60 and 0 <= args.warmup <= 60 and 1 <= args.rounds <= 10
            and 1 <= args.pace_ms <= 1000):
        parser.error("1 <= --duration <= 60, 0 <= --warmup <= 60, 1 <= --rounds <= 10 and "
                     "1 <= --pace-ms <= 1000")
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        if args.in_netns:
            NET = Layout.three_netns(args.in_netns)
        else:
            ensure_tools()  # before entering the namespace: apt-get needs the network
            if not args.no_netns and os.geteuid() == 0 and shutil.which("ip"):
                return in_own_netns(argv)
        results = measure(args)
    except KeyboardInterrupt:
        print("interrupted; every process stopped", file=sys.stderr)
        return 130
    fig = figures(results)
    where = ("own namespaces: client -> proxy -> backend" if args.in_netns
             else "current network namespace")
    print(json.dumps(fig) if args.json else table(results, fig, args, where))
    return 0


if __name__ == "__main__":
    sys.exit(main())
