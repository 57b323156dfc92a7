"""Host probe: does a node's host still answer on the network, whatever became of its agent?

`probe(addr, ports, answer_within=T)` opens TCP connections to addr on each port, in two waves
(at 0 and at T / 2, so that one lost SYN does not decide), and returns as soon as one port
answers:

- accepted: something listens there (the engine's published port of a task, say);
- refused (a RST, or an ICMP port-unreachable from the host's own firewall): nothing listens,
  but the host's kernel is alive and reachable;
- nothing within T (or host/network unreachable): the host is gone, powered off, or cut
  off from the manager.

Either answer means "the host is alive". Ports known to be open are tried first: the host ports
the engine published for the node's running tasks; `FALLBACK_PORTS` are tried as well, since a
closed port answers with a refusal just as well on a host without a firewall.

Limits (written down in the node monitor's docstring too): a host firewall that silently DROPs
the ports probed makes a live host look gone (prefer nodes whose tasks publish ports, or allow
the fallback port through); a router that rejects on the host's behalf makes a gone host look
alive until the restart grace ends. The probe runs in the manager's event loop: if the loop was
stalled while it ran, its "no answer" cannot be trusted, and the result is `None` (asked again).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass

# Tried after the task ports: ssh is open on most hosts, and a closed port answers with a RST.
FALLBACK_PORTS = (22,)
MAX_PORTS = 4
# How late the probe may finish, beyond its timeout, before its "no answer" is distrusted.
STALL_SLACK_S = 0.25

_ALIVE_ERRORS = {errno.ECONNREFUSED, errno.ECONNRESET}


@dataclass(slots=True, frozen=True)
class ProbeResult:
    answered: bool | None  # None: inconclusive (the manager itself stalled)
    detail: str


def candidate_ports(published: Iterable[int]) -> list[int]:
    """Ports to probe: the published ones first (distinct, in order), then the fallback."""
    ports = [p for p in dict.fromkeys(published) if 0 < p < 65536]
    ports = ports[: MAX_PORTS - len(FALLBACK_PORTS)]
    return ports + [p for p in FALLBACK_PORTS if p not in ports]


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


async def probe(addr: str, ports: list[int], *, answer_within: float) -> ProbeResult:
    timeout = answer_within
    if not addr:
        return ProbeResult(False, "no address known to probe")
    if not ports:
        ports = list(FALLBACK_PORTS)
    started = time.monotonic()
    pending: dict[asyncio.Task[str], int] = {}
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
                    return ProbeResult(True, f"{addr}:{port} {how}")
    finally:
        for job in pending:
            job.cancel()
        for job in pending:
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await job
    took = time.monotonic() - started
    if took > timeout + STALL_SLACK_S:
        return ProbeResult(None, f"probe took {took:.2f} s (manager stalled)")
    tried = ",".join(str(p) for p in ports)
    why = f"; {errors[-1]}" if errors else ""
    return ProbeResult(False, f"no answer from {addr} on port {tried} in {timeout:g} s{why}")
