"""Benchmark: the routing mesh's data path (podium.agent.proxy) against HAProxy, on one machine.

    .venv/bin/python bench/lb.py [--json] [--duration S] [--rounds N] [--warmup S]
                                 [--threads N] [--connections N] [--no-netns]

In one run the bench starts two nginx backends on 127.0.0.1 (a tiny config in a temp dir, each
answering a 3-byte static body; busybox httpd when nginx is missing), then measures with wrk
(`wrk -t2 -c50 -d5s --latency` by default) requests/s and p50/p99 latency of:

- direct:  straight to one backend (the floor);
- haproxy: HAProxy in tcp mode, round-robin over both backends: the baseline, with its default
  threads (one per core); and again with `nbthread 1` (`haproxy_1t_*`), one event loop like the
  Podium listener;
- podium:  a podium.agent.proxy Listener in a subprocess, on uvloop when installed, else on
  asyncio's default loop; least-connections (`podium_*`) and round-robin (`podium_rr_*`);

each with keep-alive connections and with one new connection per request (`Connection: close`).
All targets run side by side and are measured in turns, in a rotating order, --rounds times (3);
each figure is the median of its rounds, so that a busy spell of a shared machine hits every
target alike rather than whichever ran during it. It prints a table with the ratios to HAProxy
and the goals (>= 0.9 keep-alive, >= 0.7 new connection, p99 at most 1 ms over HAProxy's); with
--json, one JSON object whose keys end in their unit. The proxies' CPU use over each run is
shown too (percent of one core).

Run as root, everything runs in a network namespace of its own (`ip netns`), deleted at the end:
there no conntrack table is in play (where Docker's iptables rules load nf_conntrack, ~20k new
connections/s fill its 262,144 entries within seconds and the kernel drops packets for every
process on the machine), and other work's sockets neither disturb nor share the loopback ports.
--no-netns measures in the current namespace instead.

Missing nginx, haproxy or wrk are installed with apt-get (quietly; needs root). Every process the
bench starts runs in its own session and is stopped (SIGTERM, then SIGKILL) when it ends, however
it ends. Durations are bounded (--duration and --warmup at most 60 s, --rounds at most 10): the
run takes 5 targets x 2 modes x (warmup + rounds x duration), 160 s by default.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pathlib
import re
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

from bench._proc import cpu_seconds

HOST = "127.0.0.1"
PACKAGES = {"nginx": "nginx", "haproxy": "haproxy", "wrk": "wrk"}
MODES = {"keepalive": [], "close": ["-H", "Connection: close"]}
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
    server b1 {host}:{b1}
    server b2 {host}:{b2}
"""
# The Podium side: run as `python bench/lb.py --serve PORT B1,B2 BALANCE`.
KINDS = ("direct", "haproxy", "haproxy_1t", "podium", "podium_rr")
GOALS = {"keepalive_ratio": 0.9, "close_ratio": 0.7, "added_p99_ms": 1.0}


def _raise_interrupt(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], what: str, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} during start-up")
        with socket.socket() as sock, contextlib.suppress(OSError):
            sock.connect((HOST, port))
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

    def start(self, name: str, args: list[str], port: int) -> subprocess.Popen[bytes]:
        log = (self.root / f"{name}.log").open("wb")
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.procs.append(proc)
        try:
            wait_listening(port, proc, name)
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
        conf.write_text(NGINX_CONF.format(root=root, host=HOST, port=port))
        procs.start(f"nginx-{port}", ["nginx", "-e", str(root / f"nginx-{port}.log"), "-p",
                                      str(root), "-c", str(conf)], port)
    else:
        www = root / "www"
        www.mkdir(exist_ok=True)
        (www / "index.html").write_text("ok\n")
        procs.start(f"httpd-{port}", ["busybox", "httpd", "-f", "-p", f"{HOST}:{port}", "-h",
                                      str(www)], port)


@dataclass(slots=True)
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    proxy_cpu_pct: float | None


UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(port: int, mode: str, duration: float, threads: int, connections: int,
        pid: int | None = None) -> Result:
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--latency",
            *MODES[mode], f"http://{HOST}:{port}/"]
    cpu_before = cpu_seconds(pid) if pid else 0.0
    started = time.monotonic()
    out = subprocess.run(args, capture_output=True, text=True, timeout=duration + 60,
                         check=True).stdout
    elapsed = time.monotonic() - started
    cpu = 100 * (cpu_seconds(pid) - cpu_before) / elapsed if pid else None

    def latency(pct: str) -> float:
        match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if match is None:
            raise RuntimeError(f"no {pct}% latency in wrk output:\n{out}")
        return float(match[1]) * UNITS_MS[match[2]]

    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    if rps is None:
        raise RuntimeError(f"no Requests/sec in wrk output:\n{out}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(non2xx[1]) if non2xx else 0
    return Result(float(rps[1]), latency("50"), latency("99"), errors, cpu)


def serve(port: int, backends: str, balance: str) -> None:
    """The Podium side, in its own process: one Listener until SIGTERM."""
    from podium.agent.proxy import Endpoint, Listener, new_event_loop

    async def main() -> None:
        listener = Listener(port=port, host=HOST, balance=balance)
        listener.set_endpoints([Endpoint(f"b{i}", HOST, int(p))
                                for i, p in enumerate(backends.split(","))])
        await listener.start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        print(f"listening on {port} ({type(asyncio.get_running_loop()).__module__})", flush=True)
        await stop.wait()
        await listener.stop(close_connections=True)

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(main())


def loop_name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def start_target(procs: Processes, kind: str, backends: list[int]) -> tuple[int, int | None]:
    """Starts one target; returns its port and the pid of its proxy process (None: direct)."""
    if kind == "direct":
        return backends[0], None
    port = free_port()
    if kind.startswith("haproxy"):
        conf = procs.root / f"{kind}.cfg"
        threads = "    nbthread 1\n" if kind == "haproxy_1t" else ""
        conf.write_text(HAPROXY_CONF.format(host=HOST, port=port, b1=backends[0], b2=backends[1],
                                            threads=threads))
        proc = procs.start(kind, ["haproxy", "-db", "-f", str(conf)], port)
    else:
        balance = "round_robin" if kind == "podium_rr" else "least_conn"
        proc = procs.start(kind, [sys.executable, __file__, "--serve", str(port),
                                  ",".join(map(str, backends)), balance], port)
    return port, proc.pid


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
    samples: dict[str, list[Result]] = {f"{k}_{m}": [] for k in KINDS for m in MODES}
    with tempfile.TemporaryDirectory(prefix="podium-bench-lb-") as tmp:
        procs = Processes(pathlib.Path(tmp))
        try:
            backends = [free_port(), free_port()]
            for port in backends:
                start_backend(procs, port)
            targets = {kind: start_target(procs, kind, backends) for kind in KINDS}
            for port, _ in targets.values():
                for mode in MODES:
                    if args.warmup:
                        wrk(port, mode, args.warmup, args.threads, args.connections)
            for n in range(args.rounds):
                order = KINDS[n % len(KINDS):] + KINDS[:n % len(KINDS)]
                for mode in MODES:
                    for kind in order:
                        port, pid = targets[kind]
                        result = wrk(port, mode, args.duration, args.threads, args.connections,
                                     pid)
                        samples[f"{kind}_{mode}"].append(result)
                        print(f"  round {n + 1}: {kind} {mode} {result.rps:,.0f} req/s",
                              file=sys.stderr)
        finally:
            procs.close()
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
    for kind in ("podium", "podium_rr"):
        for base in ("haproxy", "haproxy_1t"):
            for mode in MODES:
                mine, theirs = results[f"{kind}_{mode}"], results[f"{base}_{mode}"]
                out[f"{kind}_to_{base}_{mode}_ratio"] = round(mine.rps / theirs.rps, 3)
                out[f"{kind}_over_{base}_{mode}_p99_ms"] = round(mine.p99_ms - theirs.p99_ms, 3)
    out["podium_loop_name"] = loop_name()
    return out


def goal_lines(fig: dict[str, float | int | str], base: str) -> list[str]:
    lines = []
    for mode, goal in (("keepalive", GOALS["keepalive_ratio"]), ("close", GOALS["close_ratio"])):
        ratio = float(fig[f"podium_to_{base}_{mode}_ratio"])
        added = float(fig[f"podium_over_{base}_{mode}_p99_ms"])
        lines.append(f"  vs {base:<11}{mode:<10} ratio {ratio:.2f} (goal >= {goal}: "
                     f"{'met' if ratio >= goal else 'MISSED'}); p99 {added:+.2f} ms "
                     f"(goal <= +{GOALS['added_p99_ms']:g}: "
                     f"{'met' if added <= GOALS['added_p99_ms'] else 'MISSED'})")
    return lines


LABELS = {"direct": "direct (one nginx)", "haproxy": "haproxy tcp roundrobin",
          "haproxy_1t": "haproxy ... nbthread 1", "podium": "podium least_conn",
          "podium_rr": "podium round_robin"}


def table(results: dict[str, Result], fig: dict[str, float | int | str],
          args: argparse.Namespace, where: str) -> str:
    lines = [f"wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s, median of "
             f"{args.rounds} rounds; two "
             f"{'nginx' if shutil.which('nginx') else 'busybox httpd'} backends on {HOST} "
             f"({where}); {os.cpu_count()} cores shared by all; Podium on "
             f"{fig['podium_loop_name']}",
             f"{'target':<24}{'mode':<11}{'req/s':>9}{'vs haproxy':>12}{'vs 1 thread':>12}"
             f"{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'proxy cpu %':>13}"]
    for name, r in results.items():
        kind, mode = name.rsplit("_", 1)
        ratio = r.rps / results[f"haproxy_{mode}"].rps
        ratio_1t = r.rps / results[f"haproxy_1t_{mode}"].rps
        cpu = "" if r.proxy_cpu_pct is None else f"{r.proxy_cpu_pct:.0f}"
        lines.append(f"{LABELS[kind]:<24}{mode:<11}{r.rps:>9,.0f}{ratio:>11.2f}x{ratio_1t:>11.2f}x"
                     f"{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}{r.errors:>8}{cpu:>13}")
    lines.append("goals (podium least_conn):")
    lines += goal_lines(fig, "haproxy") + goal_lines(fig, "haproxy_1t")
    return "\n".join(lines)


def in_own_netns(argv: list[str]) -> int:
    """Runs this bench again inside a new network namespace; deletes the namespace after."""
    name = f"podium-bench-lb-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    inner: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, timeout=30)
        inner = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, __file__,
                                  "--in-netns", *argv], start_new_session=True)
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
        subprocess.run(["ip", "netns", "delete", name], check=False, timeout=30)


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), sys.argv[3], sys.argv[4])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per figure")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of wrk before all")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections")
    parser.add_argument("--no-netns", action="store_true",
                        help="measure in the current network namespace")
    parser.add_argument("--in-netns", action="store_true", help=argparse.SUPPRESS)
    argv = sys.argv[1:]
    args = parser.parse_args(argv)
    if not (1 <= args.duration <= 60 and 0 <= args.warmup <= 60 and 1 <= args.rounds <= 10):
        parser.error("1 <= --duration <= 60, 0 <= --warmup <= 60 and 1 <= --rounds <= 10")
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        if not args.in_netns:
            ensure_tools()  # before entering the namespace: apt-get needs the network
            if not args.no_netns and os.geteuid() == 0 and shutil.which("ip"):
                return in_own_netns(argv)
        results = measure(args)
    except KeyboardInterrupt:
        print("interrupted; every process stopped", file=sys.stderr)
        return 130
    fig = figures(results)
    where = "own network namespace" if args.in_netns else "current network namespace"
    print(json.dumps(fig) if args.json else table(results, fig, args, where))
    return 0


if __name__ == "__main__":
    sys.exit(main())
