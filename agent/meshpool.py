"""The asyncio mesh spread over worker processes, one event loop per core.

A single Python event loop forwards at most what one core can: about 10k new connections/s
here. `MeshPool` runs `workers` processes (`podium.agent._meshworker`), each a whole
`podium.agent.proxy.Mesh`. The pool binds every published port itself, once, and hands the
listening socket to every worker: they all accept from it, as nginx's workers and HAProxy's
threads share a port, and whichever is free takes the next connection. Binding in the agent
keeps a port's errors single ("in use" is found once, here) and the port bound while workers
come and go: a worker that dies loses no connection waiting to be accepted. Running the data
path outside the agent's process also keeps the traffic off the event loop that runs its
session and heartbeats.

Contract (that of `Mesh`, which the agent uses interchangeably):
- `MeshPool(workers=N, host="0.0.0.0", connect_timeout=CONNECT_TIMEOUT_S)`, N >= 1;
  `podium.agent.main.default_workers()` is the agent's default N (one per core, at most 4; 0,
  no pool, on one core).
- `apply({port: ListenerSpec})` binds the new ports, sends their sockets and the wanted set to
  every worker, closes the ports no longer wanted, and returns the errors: a port that cannot
  be bound ("port 8080 in use: ...", the others still served; the next apply tries again),
  and what the workers report, each once, or one per worker that did not answer. The workers
  start with the first non-empty set, so an agent that publishes nothing runs none (each costs
  about 13 MB of its own, 25 MB RSS).
- `stats()`: published port -> endpoint key -> connections, summed over the workers from what
  each last reported (they report changes every 0.2 s: counts lag by that much).
- `requests()`: published port -> endpoint key -> requests forwarded since the pool was made
  (`Mesh.requests()` summed over the workers, with the same lag). A worker started again counts
  from 0: the pool keeps what each exited worker last reported, so the sums never decrease
  (the requests an exited worker forwarded in its last 0.2 s are not counted).
- `traffic()`: published port -> `Traffic` (bytes, failed backend connections, connect times),
  summed the same way.
- `close()`: idempotent; stops the workers (their connections are aborted, as `Mesh.close()`
  does) and waits for them to exit, killing one that takes over `STOP_TIMEOUT`.

A worker that exits is started again after `RESTART_DELAY` (doubling while it keeps exiting
within a minute, up to 30 s) with the current wanted set. Only its own connections are lost:
the others keep serving the port meanwhile. Each worker balances its own connections
(least-connections counts per worker), as HAProxy does per thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

import msgpack

from podium.agent._meshworker import decode_stats, encode_specs
from podium.agent.meshspec import CONNECT_TIMEOUT_S, ListenerSpec, Traffic, add_traffic
from podium.agent.proxy import listening_socket, port_error

log = logging.getLogger(__name__)

# Seconds a worker has to answer an apply (a healthy one takes milliseconds); one that does
# not is killed and started again, so a stuck worker delays routing changes once, not each time.
APPLY_TIMEOUT = 5.0
STOP_TIMEOUT = 5.0
RESTART_DELAY = 0.5
MAX_RESTART_DELAY = 30.0
STABLE_AFTER = 60.0  # a worker that ran this long restarts after RESTART_DELAY again

class _Worker:
    """One worker process and the agent's end of its socket."""

    def __init__(self, index: int, proc: asyncio.subprocess.Process,
                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 sockets: socket.socket) -> None:
        self.index = index
        self.proc = proc
        self._sockets = sockets  # where listening sockets are handed over
        self._reader = reader
        self._writer = writer
        self._seq = 0
        self._pending: dict[int, asyncio.Future[list[str]]] = {}
        self.stats: dict[int, dict[str, int]] = {}
        self.requests: dict[int, dict[str, int]] = {}  # since it started, as it last reported
        self.traffic: dict[int, Traffic] = {}  # the same
        self.reading = asyncio.create_task(self._read(), name=f"mesh-worker-{index}")

    @classmethod
    async def spawn(cls, index: int, *, host: str, connect_timeout: float) -> _Worker:
        ours, theirs = socket.socketpair()
        our_sockets, their_sockets = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        our_sockets.setblocking(False)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "podium.agent._meshworker", "--fd", str(theirs.fileno()),
                "--sockets-fd", str(their_sockets.fileno()), "--host", host,
                "--connect-timeout", str(connect_timeout),
                pass_fds=(theirs.fileno(), their_sockets.fileno()), stdin=subprocess.DEVNULL)
        except BaseException:
            ours.close()
            our_sockets.close()
            raise
        finally:
            theirs.close()
            their_sockets.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        return cls(index, proc, reader, writer, our_sockets)

    def hand_over(self, port: int, sock: socket.socket) -> str | None:
        """Sends the worker `port`'s listening socket; an error text when it cannot."""
        try:
            socket.send_fds(self._sockets, [str(port).encode()], [sock.fileno()])
        except OSError as exc:  # its queue is full (it is stuck) or it is gone
            return f"mesh worker {self.index}: port {port} not handed over: {exc}"
        return None

    async def _read(self) -> None:
        unpacker = msgpack.Unpacker(raw=False)
        with contextlib.suppress(ConnectionError):
            while chunk := await self._reader.read(65536):
                unpacker.feed(chunk)
                for message in unpacker:
                    if message[0] == "applied":
                        future = self._pending.pop(message[1], None)
                        if future is not None and not future.done():
                            future.set_result([str(e) for e in message[2]])
                    elif message[0] == "stats":
                        self.stats = decode_stats(message[1])
                        if len(message) > 2:
                            self.requests = decode_stats(message[2])
                        if len(message) > 3:
                            self.traffic = {int(port): Traffic.decode(data)
                                            for port, data in message[3]}
        self.stats = {}
        for future in self._pending.values():
            if not future.done():
                future.set_result([f"mesh worker {self.index} exited"])
        self._pending.clear()

    async def apply(self, wire: list[list[Any]]) -> list[str]:
        if self.reading.done():
            return [f"mesh worker {self.index} is not running"]
        self._seq = seq = self._seq + 1
        future: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._pending[seq] = future
        try:
            self._writer.write(msgpack.packb(["apply", seq, wire]))
            async with asyncio.timeout(APPLY_TIMEOUT):
                await self._writer.drain()
                return await future
        except ConnectionError as exc:
            self._pending.pop(seq, None)
            return [f"mesh worker {self.index}: {exc}"]
        except TimeoutError:
            self._pending.pop(seq, None)
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()  # its supervisor starts it again
            return [f"mesh worker {self.index} did not answer within {APPLY_TIMEOUT:g} s: "
                    "killed, to be started again"]

    async def exited(self) -> int:
        """Waits until the worker has exited and its socket is read to the end."""
        code = await self.proc.wait()
        await self.reading
        return code

    async def stop(self) -> None:
        """Closing our end tells the worker to stop; it is killed if it takes too long."""
        self._writer.close()
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await self.proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()  # its peer is gone: this cannot wait long
        self.reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.reading
        self._sockets.close()


class MeshPool:
    """The routing mesh's listeners, run by `workers` processes sharing every port."""

    def __init__(self, *, workers: int, host: str = "0.0.0.0",
                 connect_timeout: float = CONNECT_TIMEOUT_S) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.host = host
        self.connect_timeout = connect_timeout
        self._size = workers
        self._workers: list[_Worker] = []
        self._supervisors: list[asyncio.Task[None]] = []
        self._listening: dict[int, socket.socket] = {}  # port -> the socket the workers share
        self._wire: list[list[Any]] = []  # the wanted set of the ports bound, as sent
        self._retired: dict[int, dict[str, int]] = {}  # requests counted by exited workers
        self._retired_traffic: dict[int, Traffic] = {}  # their traffic
        self._lock = asyncio.Lock()
        self._closed = False

    async def apply(self, wanted: Mapping[int, ListenerSpec]) -> list[str]:
        """Makes exactly `wanted` listen in every worker; returns their errors, each once."""
        async with self._lock:
            if self._closed:
                return ["the mesh is closed"]
            errors, bound = self._bind(wanted)
            self._wire = encode_specs({p: s for p, s in wanted.items() if p in self._listening})
            if not self._workers and self._wire:
                try:
                    await self._start()
                except OSError as exc:
                    # Unbound again: with nobody to accept, clients would hang, not be refused.
                    for sock in self._listening.values():
                        sock.close()
                    self._listening.clear()
                    return [*errors, f"mesh workers could not start: {exc}"]
                bound = list(self._listening)  # new workers need every socket
            for worker in self._workers:
                errors += filter(None, (worker.hand_over(p, self._listening[p]) for p in bound))
            results = await asyncio.gather(*(w.apply(self._wire) for w in self._workers))
            # The workers have closed their copies: closing ours frees the port.
            for port in set(self._listening) - set(wanted):
                self._listening.pop(port).close()
        return list(dict.fromkeys(errors + [e for result in results for e in result]))

    def _bind(self, wanted: Mapping[int, ListenerSpec]) -> tuple[list[str], list[int]]:
        """Binds the wanted ports not bound yet: (errors, the ports newly bound)."""
        errors, bound = [], []
        for port in sorted(set(wanted) - set(self._listening)):
            try:
                self._listening[port] = listening_socket(self.host, port)
            except OSError as exc:
                errors.append(port_error(port, exc))
            else:
                bound.append(port)
        return errors, bound

    async def _start(self) -> None:
        try:
            for index in range(self._size):
                self._workers.append(await self._spawn(index))
        except BaseException:
            workers, self._workers = self._workers, []
            await asyncio.gather(*(w.stop() for w in workers))
            raise
        self._supervisors = [asyncio.create_task(self._supervise(i), name=f"mesh-supervisor-{i}")
                             for i in range(self._size)]

    async def _spawn(self, index: int) -> _Worker:
        return await _Worker.spawn(index, host=self.host, connect_timeout=self.connect_timeout)

    async def _supervise(self, index: int) -> None:
        """Starts worker `index` again whenever it exits (with backoff), with the wanted set."""
        loop = asyncio.get_running_loop()
        delay = RESTART_DELAY
        started = loop.time()
        while True:
            exited = self._workers[index]
            code = await exited.exited()
            self._retire(exited)
            await exited.stop()  # closes its socket
            if loop.time() - started >= STABLE_AFTER:
                delay = RESTART_DELAY
            log.error("mesh worker %d exited with %s; starting it again in %.1f s",
                      index, code, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RESTART_DELAY)
            async with self._lock:
                try:
                    worker = await self._spawn(index)
                except OSError as exc:
                    log.error("mesh worker %d could not start: %s", index, exc)
                    continue  # its old, exited process is waited on again at once
                self._workers[index] = worker
                started = loop.time()
                handed = [worker.hand_over(p, s) for p, s in self._listening.items()]
                for error in [*filter(None, handed), *await worker.apply(self._wire)]:
                    log.error("mesh: %s", error)

    def stats(self) -> dict[int, dict[str, int]]:
        """Published port -> endpoint key -> connections, summed over the workers."""
        total: dict[int, dict[str, int]] = {}
        for worker in self._workers:
            _add(total, worker.stats)
        return total

    def requests(self) -> dict[int, dict[str, int]]:
        """Published port -> endpoint key -> requests forwarded since the pool was made, summed
        over the workers, those that exited included: counters that never decrease."""
        total = {port: dict(counts) for port, counts in self._retired.items()}
        for worker in self._workers:
            _add(total, worker.requests)
        return total

    def traffic(self) -> dict[int, Traffic]:
        """Published port -> its traffic since the pool was made, summed over the workers like
        requests()."""
        total: dict[int, Traffic] = {}
        add_traffic(total, self._retired_traffic)
        for worker in self._workers:
            add_traffic(total, worker.traffic)
        return total

    def _retire(self, worker: _Worker) -> None:
        """Keeps the counts of a worker that exited (its process is gone: they cannot grow)."""
        counts, worker.requests = worker.requests, {}
        _add(self._retired, counts)
        traffic, worker.traffic = worker.traffic, {}
        add_traffic(self._retired_traffic, traffic)

    def pids(self) -> list[int]:
        """The workers' process ids (for measuring them)."""
        return [w.proc.pid for w in self._workers]

    async def close(self) -> None:
        """Stops every worker and waits for it; idempotent."""
        self._closed = True
        for task in self._supervisors:
            task.cancel()
        for task in self._supervisors:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._supervisors = []
        async with self._lock:
            workers, self._workers = self._workers, []
            await asyncio.gather(*(w.stop() for w in workers))
            for worker in workers:
                self._retire(worker)
            for sock in self._listening.values():
                sock.close()
            self._listening.clear()

    async def __aenter__(self) -> MeshPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _add(total: dict[int, dict[str, int]], counts: Mapping[int, Mapping[str, int]]) -> None:
    """Adds port -> key -> count figures into `total`."""
    for port, per_key in counts.items():
        into = total.setdefault(port, {})
        for key, n in per_key.items():
            into[key] = into.get(key, 0) + n
