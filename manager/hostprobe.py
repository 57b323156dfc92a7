"""Host probe: does a node's host still answer on the network, whatever became of its agent, and
do its tasks' published ports still accept connections?

`probe(addr, task_ports, answer_within=T)` opens TCP connections to addr on each of the task
ports (the host ports the engine published for the node's running tasks) and on
`FALLBACK_PORTS`, in two waves (at 0 and at T / 2, so that one lost SYN does not decide):

- accepted: something listens there;
- refused (a RST, or an ICMP port-unreachable from the host's own firewall): nothing listens,
  but the host's kernel is alive and reachable;
- nothing within T (or host/network unreachable): gone, powered off, or cut off.

The result says whether the host answered at all (`host`: any port accepted or refused) and
whether its workload does (`serving`: a task port accepted; None when the node has no task
port to try). It returns as soon as a task port accepts (or, without task ports, at the first
answer); otherwise at T, so that a slow task port is given its full time.

Why both: an agent killed alone leaves its containers serving (a task port accepts: hold its
tasks); an agent killed together with its engine (the containers die with it) leaves a live
kernel whose task ports answer nothing, or refuse (replace them now: nothing serves).

Limits (written down in the node monitor's docstring too): a host firewall that silently DROPs
every port probed makes a live host look gone (allow the manager to port 22, or to the published
ports); a router that rejects on the host's behalf makes a gone host look alive until the restart
grace ends. The probe runs in the manager's event loop: if the loop was stalled while it ran, its
"no answer" cannot be trusted, and `host` is None (asked for again).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import struct
import time
from dataclasses import dataclass

# Tried besides the task ports: ssh is open on most hosts, and a closed port answers with a RST.
FALLBACK_PORTS = (22,)
MAX_TASK_PORTS = 3
# How late the probe may finish, beyond its timeout, before its "no answer" is distrusted.
STALL_SLACK_S = 0.25

_ALIVE_ERRORS = {errno.ECONNREFUSED, errno.ECONNRESET}


@dataclass(slots=True, frozen=True)
class ProbeResult:
    host: bool | None  # the host answered; None: inconclusive (the manager itself stalled)
    serving: bool | None  # a task port accepted; None: no task port to try, or inconclusive
    detail: str


async def _connect(addr: str, port: int) -> str:
    """"accepted" or "refused"; raises OSError for anything else (unreachable, ...)."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, (addr, port))
        # Reset rather than FIN: the service on the port sees no half-open request.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return "accepted"
    except OSError as err:
        if err.errno in _ALIVE_ERRORS:
            return "refused"
        raise
    finally:
        sock.close()


async def probe(addr: str, task_ports: list[int], *, answer_within: float) -> ProbeResult:
    timeout = answer_within
    if not addr:
        return ProbeResult(False, None, "no address known to probe")
    task_ports = [p for p in dict.fromkeys(task_ports) if 0 < p < 65536][:MAX_TASK_PORTS]
    ports = task_ports + [p for p in FALLBACK_PORTS if p not in task_ports]
    started = time.monotonic()
    pending: dict[asyncio.Task[str], int] = {}
    answers: list[str] = []  # "addr:port how", in the order they came
    errors: list[str] = []

    def launch() -> None:
        for port in ports:
            pending[asyncio.ensure_future(_connect(addr, port))] = port

    try:
        for wave_end in (started + timeout / 2, started + timeout):
            launch()  # a fresh SYN to every port in each wave
            while (left := wave_end - time.monotonic()) > 0:
                if not pending:
                    await asyncio.sleep(left)
                    break
                done, _ = await asyncio.wait(set(pending), timeout=left,
                                             return_when=asyncio.FIRST_COMPLETED)
                for job in done:
                    port = pending.pop(job)
                    try:
                        how = job.result()
                    except OSError as err:
                        errors.append(f"{port}: {err.strerror or err}")
                        continue
                    answers.append(f"{addr}:{port} {how}")
                    if port in task_ports and how == "accepted":
                        return ProbeResult(True, True, answers[-1])
                    if not task_ports:
                        return ProbeResult(True, None, answers[-1])
    finally:
        for job in pending:
            job.cancel()
        for job in pending:
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await job
    took = time.monotonic() - started
    if took > timeout + STALL_SLACK_S:
        return ProbeResult(None, None, f"probe took {took:.2f} s (manager stalled)")
    if answers:
        listed = ",".join(str(p) for p in task_ports)
        return ProbeResult(True, False, f"{', '.join(dict.fromkeys(answers))}, but no task port "
                           f"({listed}) accepted in {timeout:g} s")
    tried = ",".join(str(p) for p in ports)
    why = f"; {errors[-1]}" if errors else ""
    return ProbeResult(False, None, f"no answer from {addr} on port {tried} in {timeout:g} s{why}")
