"""Benchmark: the internal path, from one container to a service by name, against the same
request to the replica's own address, in one run.

    python bench/internal.py [--json] [--duration S] [--rounds N] [--connections N]
                             [--pace-ms MS]

On two simulated hosts (podium.lab.hosts: network namespaces, each with its own engine and agent)
it deploys one stack: `client` (a container that only sleeps) and `near` on h1, `far` on h2, both
serving busybox httpd's static page on port 80 without publishing it. From inside the client
container's network namespace (wrk on the host, run with nsenter into it; one new connection per
request, as busybox httpd closes every connection), it measures requests/s and p50/p99 latency of:

- direct: the `near` replica's own container address (the floor: no Podium in the path);
- by name, same node: `near`'s virtual IP, which the client's name server gave for the name
  `near` (the agent's proxy on h1 forwards to the replica on h1);
- by name, other node: `far`'s virtual IP (h1's agent forwards through h2's relay to the replica
  on h2: two proxies and a host hop).

Each saturated (each wrk connection sends its next request once it has an answer) and paced
(each waits --pace-ms first, 10 ms: the latency a request gets without a queue). Targets are
measured in turns, --rounds times (3), each figure the median of its rounds. Errors are wrk's
(its "read" errors through the proxy are connections the proxy closed without an answer: its
connect to the only replica failed within its 1 s connect timeout under saturation, and there
was no other replica to try). The name lookup
itself (the client's name server answering `near`) is timed too, over 20 lookups. It prints a
table with each path's figures, its ratio to direct and its p99 over direct's; with --json, one
JSON object whose keys end in their unit. Needs root (namespaces), wrk and nsenter.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from bench._wrk import CLOSE, PACE_SCRIPT, Figures, parse
from podium.lab.hosts import HostCluster
from podium.lab.local import IMAGE, eventually

# At ~10k new connections/s, TIME_WAIT sockets (60 s) pile up in the client's namespace and
# the client's ports come round again while they last: every path, direct included, then
# fell to ~1k req/s for a minute after the first runs (a SYN that meets one waits a 1 s
# retransmission). Few TIME_WAIT sockets (the kernel drops the excess) keep the rounds
# comparable; the bench sets it only in the namespaces it made (containers and hosts).
TW_BUCKETS = 64
STACK = f"""
name: bench
services:
  client:
    image: {IMAGE}
    command: ["sleep", "3600"]
    sysctls: {{net.ipv4.tcp_max_tw_buckets: "{TW_BUCKETS}"}}
    deploy: {{placement: {{constraints: ["node.labels.host == h1"]}}}}
  near:
    image: {IMAGE}
    expose: ["80"]
    sysctls: {{net.ipv4.tcp_max_tw_buckets: "{TW_BUCKETS}"}}
    deploy: {{placement: {{constraints: ["node.labels.host == h1"]}}}}
  far:
    image: {IMAGE}
    expose: ["80"]
    sysctls: {{net.ipv4.tcp_max_tw_buckets: "{TW_BUCKETS}"}}
    deploy: {{placement: {{constraints: ["node.labels.host == h2"]}}}}
"""
PATHS = ("direct", "name_same_node", "name_other_node")
MODES = ("saturated", "paced")


def wrk(pid: int, url: str, *, connections: int, duration: float,
        script: pathlib.Path | None) -> Figures:
    extra = ["-s", str(script)] if script else []
    out = subprocess.run(
        ["nsenter", "-t", str(pid), "-n", "wrk", "-t1", f"-c{connections}", f"-d{duration:g}s",
         "--latency", *CLOSE, *extra, url],
        capture_output=True, text=True, timeout=duration + 60, check=True).stdout

    return parse(out)


def running_container(hosts: HostCluster, host: str, service: str) -> str:
    out = hosts.docker(host, "ps", "-q", "--filter", f"label=io.podium.service.name={service}")
    ids = out.split()
    if not ids:
        raise LookupError(service)
    return ids[0]


def lookup(hosts: HostCluster, host: str, container: str, name: str) -> str:
    out = hosts.docker(host, "exec", container, "sh", "-c", f"nslookup {name} 2>&1 || true")
    found = re.findall(r"Address:\s*(\d+\.\d+\.\d+\.\d+)\s*$", out, re.M)
    answers = [a for a in found if not a.startswith("127.")]
    if not answers:
        raise LookupError(f"{name} does not resolve: {out}")
    return answers[-1]


def lookup_ms(hosts: HostCluster, host: str, container: str, name: str, count: int) -> float:
    """Median milliseconds of one name lookup inside the container (the shell's own loop)."""
    script = (f"i=0; while [ $i -lt {count} ]; do nslookup {name} >/dev/null 2>&1; "
              "i=$((i+1)); done")
    started = time.monotonic()
    hosts.docker(host, "exec", container, "sh", "-c", script)
    return 1000 * (time.monotonic() - started) / count


def measure(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="podium-internal-") as tmp, \
            HostCluster(pathlib.Path(tmp) / "hosts", hosts=2) as hosts:
        for host in hosts.names:
            hosts.in_host(host, "sysctl", "-qw", f"net.ipv4.tcp_max_tw_buckets={TW_BUCKETS}")
        hosts.deploy(STACK, name="bench")
        client = eventually(lambda: running_container(hosts, "h1", "bench_client"), timeout=60,
                            what="the client container")
        near = eventually(lambda: running_container(hosts, "h1", "bench_near"), timeout=60,
                          what="near")
        near_ip = json.loads(hosts.docker("h1", "inspect", near))[0]["NetworkSettings"][
            "Networks"]
        near_addr = next(iter(near_ip.values()))["IPAddress"]
        pid = int(json.loads(hosts.docker("h1", "inspect", client))[0]["State"]["Pid"])
        urls = {"direct": f"http://{near_addr}:80/"}
        for path, name in (("name_same_node", "near"), ("name_other_node", "far")):
            vip = eventually(lambda n=name: lookup(hosts, "h1", client, n), timeout=60,  # type: ignore[misc]
                             what=f"{name} resolves")
            urls[path] = f"http://{vip}:80/"
            eventually(lambda u=urls[path]: wrk(pid, u, connections=1, duration=1,  # type: ignore[misc]
                                                script=None).errors == 0,
                       timeout=60, what=f"{path} answers")
        resolve_ms = lookup_ms(hosts, "h1", client, "near", 20)
        pace = pathlib.Path(tmp) / "pace.lua"
        pace.write_text(PACE_SCRIPT.format(ms=args.pace_ms))
        runs: dict[tuple[str, str], list[Figures]] = {}
        order = list(PATHS)
        for round_ in range(args.rounds):
            for mode in MODES:
                for path in order[round_ % 3:] + order[:round_ % 3]:
                    result = wrk(pid, urls[path], connections=args.connections,
                                 duration=args.duration,
                                 script=pace if mode == "paced" else None)
                    runs.setdefault((path, mode), []).append(result)
                    print(f"round {round_ + 1} {path} {mode}: {result.rps:.0f} req/s, "
                          f"p99 {result.p99_ms:.2f} ms, {result.errors} errors {result.detail}",
                          file=sys.stderr, flush=True)
    figures: dict[str, Any] = {"name_lookup_ms": round(resolve_ms, 2)}
    for (path, mode), results in runs.items():
        prefix = f"{path}_{mode}"
        figures[f"{prefix}_rps"] = round(statistics.median(r.rps for r in results), 1)
        figures[f"{prefix}_p50_ms"] = round(statistics.median(r.p50_ms for r in results), 3)
        figures[f"{prefix}_p99_ms"] = round(statistics.median(r.p99_ms for r in results), 3)
        figures[f"{prefix}_errors_count"] = sum(r.errors for r in results)
    for path in PATHS[1:]:
        for mode in MODES:
            direct, here = f"direct_{mode}", f"{path}_{mode}"
            figures[f"{here}_rps_ratio"] = round(figures[f"{here}_rps"] /
                                                 max(figures[f"{direct}_rps"], 1e-9), 3)
            figures[f"{here}_added_p99_ms"] = round(figures[f"{here}_p99_ms"] -
                                                    figures[f"{direct}_p99_ms"], 3)
    return figures


def table(f: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [f"internal path: one container -> a service by name, {args.connections} connections, "
             f"new connection per request, median of {args.rounds} rounds of {args.duration:g} s",
             f"name lookup in the container: {f['name_lookup_ms']:.1f} ms",
             f"{'path':24}{'mode':11}{'req/s':>9}{'x direct':>10}{'p50 ms':>9}{'p99 ms':>9}"
             f"{'p99 +ms':>9}{'errors':>8}"]
    for path in PATHS:
        for mode in MODES:
            p = f"{path}_{mode}"
            ratio = f.get(f"{p}_rps_ratio")
            added = f.get(f"{p}_added_p99_ms")
            lines.append(
                f"{path:24}{mode:11}{f[p + '_rps']:>9.0f}"
                f"{'' if ratio is None else f'{ratio:.2f}':>10}{f[p + '_p50_ms']:>9.2f}"
                f"{f[p + '_p99_ms']:>9.2f}{'' if added is None else f'{added:+.2f}':>9}"
                f"{f[p + '_errors_count']:>8}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--pace-ms", type=int, default=10)
    args = parser.parse_args()
    if not (0 < args.duration <= 60 and 1 <= args.rounds <= 10 and 1 <= args.connections <= 256
            and 0 <= args.pace_ms <= 1000):
        parser.error("0 < --duration <= 60, 1 <= --rounds <= 10, 1 <= --connections <= 256, "
                     "0 <= --pace-ms <= 1000")
    figures = measure(args)
    print(json.dumps(figures) if args.json else table(figures, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
