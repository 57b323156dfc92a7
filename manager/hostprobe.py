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
grace ends. The probe runs in the manager's event loop, which may run behind (thousands of agents
reconnecting at once): each connect's outcome is read from its socket (the kernel's pending
error), so a refusal that came in time counts however late the loop looks. A probe that
finished more than STALL_SLACK_S late with no answer at all is still reported as inconclusive
(`host` None, asked for again): its second wave's SYN may have gone out late.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import select
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


class _Attempt:
    """One non-blocking connect. Its outcome is read from the kernel (the socket's pending
    error), not from when the event loop got round to it: a manager whose loop runs behind
    (thousands of agents reconnecting at once) still sees a RST that came in time."""

    __slots__ = ("_loop", "counted", "error", "how", "port", "sock")

    def __init__(self, loop: asyncio.AbstractEventLoop, addr: str, port: int,
                 wake: asyncio.Event) -> None:
        self.port = port
        self.how = ""  # "accepted" or "refused" once the host answered
        self.error = ""  # why not, once it failed otherwise (unreachable, ...)
        self.counted = False  # the probe took its outcome in
        self._loop = loop
        self.sock = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET,
                                  socket.SOCK_STREAM)
        self.sock.setblocking(False)
        err = self.sock.connect_ex((addr, port))
        if err != errno.EINPROGRESS:
            self._settle(err)
        else:
            def ready() -> None:  # writable stays writable: listen once
                loop.remove_writer(self.sock)
                wake.set()
            loop.add_writer(self.sock, ready)

    @property
    def settled(self) -> bool:
        return bool(self.how or self.error)

    def look(self) -> bool:
        """Reads the outcome if the kernel has one by now; whether it is settled."""
        if not self.settled:
            poller = select.poll()
            poller.register(self.sock, select.POLLOUT)
            if poller.poll(0):
                self._settle(self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
        return self.settled

    def _settle(self, err: int) -> None:
        if err == 0:
            self.how = "accepted"
        elif err in _ALIVE_ERRORS:
            self.how = "refused"
        else:
            self.error = os.strerror(err)

    def close(self) -> None:
        self._loop.remove_writer(self.sock)
        if self.how == "accepted":
            # Reset rather than FIN: the service on the port sees no half-open request.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


async def probe(addr: str, task_ports: list[int], *, answer_within: float) -> ProbeResult:
    timeout = answer_within
    if not addr:
        return ProbeResult(False, None, "no address known to probe")
    task_ports = [p for p in dict.fromkeys(task_ports) if 0 < p < 65536][:MAX_TASK_PORTS]
    ports = task_ports + [p for p in FALLBACK_PORTS if p not in task_ports]
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    wake = asyncio.Event()
    attempts: list[_Attempt] = []
    answers: list[str] = []  # "addr:port how", in the order they came
    errors: list[str] = []

    def decided() -> ProbeResult | None:
        """Takes in every outcome the kernel has by now; the result once one decides."""
        result = None
        for attempt in attempts:
            if attempt.counted or not attempt.look():
                continue
            attempt.counted = True
            if attempt.error:
                errors.append(f"{attempt.port}: {attempt.error}")
                continue
            answers.append(f"{addr}:{attempt.port} {attempt.how}")
            if result is None and attempt.port in task_ports and attempt.how == "accepted":
                result = ProbeResult(True, True, answers[-1])
            elif result is None and not task_ports:
                result = ProbeResult(True, None, answers[-1])
        return result

    try:
        for wave_end in (started + timeout / 2, started + timeout):
            # A fresh SYN to every port in each wave.
            attempts.extend(_Attempt(loop, addr, port, wake) for port in ports)
            while (result := decided()) is None and (left := wave_end - time.monotonic()) > 0:
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await wake.wait()
            if result is not None:
                return result
    finally:
        for attempt in attempts:
            attempt.close()
    took = time.monotonic() - started
    if took > timeout + STALL_SLACK_S and not answers:
        return ProbeResult(None, None, f"probe took {took:.2f} s (manager stalled)")
    if answers:
        listed = ",".join(str(p) for p in task_ports)
        return ProbeResult(True, False, f"{', '.join(dict.fromkeys(answers))}, but no task port "
                           f"({listed}) accepted in {timeout:g} s")
    tried = ",".join(str(p) for p in ports)
    why = f"; {errors[-1]}" if errors else ""
    return ProbeResult(False, None, f"no answer from {addr} on port {tried} in {timeout:g} s{why}")
