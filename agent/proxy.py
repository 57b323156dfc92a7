"""The routing mesh's data path: TCP listeners that forward each connection to a ready replica.

Contract
--------
- `Endpoint(key, host, port)`: one replica (`key` is e.g. its task id).
- `Balancer`: `pick(endpoints, active, exclude) -> Endpoint | None`, `active` counting connections
  per key: `LeastConnections` (the default; ties go round-robin) and `RoundRobin`.
- `Listener(port=..., host="0.0.0.0", balance="least-connections"|"round-robin",
  proxy_protocol=False, connect_timeout=CONNECT_TIMEOUT_S, sock=None)`: one published port.
  `start()` binds it (port 0: a free one, see `.port`), or serves `sock`, a listening socket bound
  elsewhere (by the agent, for a mesh worker), which the listener then owns;
  `stop(close_connections=False)` is idempotent and closes the listening socket only: open
  connections finish on their own unless `close_connections=True` aborts them. `set_endpoints()`
  replaces the endpoint set atomically for new connections; those to a removed endpoint carry on
  until either side closes (they drain). `configure()` changes balance and PROXY protocol for new
  connections. `stats()`: endpoint key -> connections (connecting or open), for every current
  endpoint and removed ones still draining. `requests`: endpoint key -> requests forwarded since the
  listener was made (see "Requests" below); it only grows, also after an endpoint is removed or
  `stop()`.
- `Mesh(host=..., connect_timeout=..., sockets=None)`: all listeners of an agent, or of one mesh
  worker (podium.agent.meshpool), whose `sockets(port)` hands over the listening socket the
  agent bound for a port (KeyError: none). `apply({port: ListenerSpec})` starts, stops and
  reconfigures listeners so exactly the wanted ports are served and returns errors ("port 8080
  in use: ...") instead of raising: one bad port never stops the others, and the next apply
  tries it again. A port no longer wanted stops listening at once; its connections drain (and
  still show in `stats()`). `requests()`: published port -> endpoint key -> requests forwarded
  since the mesh was made, every current endpoint listed (0 before its first), ports and
  endpoints no longer served included: counters that never decrease for the mesh's lifetime
  (also after `close()`). A key absent is one this mesh does not count (the kernel mesh lists
  none). `traffic()`: published port -> `Traffic` (bytes each way, backend connections failed,
  connect times), counters of the same lifetime. `close()` stops everything, aborting
  connections.
- `listening_socket(host, port)`: a bound, listening, non-blocking TCP socket (SO_REUSEADDR, as
  asyncio's servers); `port_error(port, exc)`: the error text `apply` reports for it.
- `new_event_loop()`: uvloop's loop when installed, else asyncio's, for the agent's
  `asyncio.Runner(loop_factory=...)`. Importing this module sets no loop policy; the proxy works
  on whichever loop runs it.

Data path (asyncio Protocols, no streams): on accept the balancer picks an endpoint and
`loop.create_connection` dials it within `connect_timeout`. A refused, unreachable or timed-out
endpoint is left out for this connection and the balancer picks again until none is left: only
then is the client closed, so a dead replica costs a client nothing while another can serve. A
client reset meanwhile cancels the attempt; one that only sent EOF still gets its answer.
Bytes the client sends before the backend answers are buffered (reading pauses past
`EARLY_DATA_LIMIT`) rather than pausing every new connection up front: that pause would cost two
system calls per connection, and neither loop honours a pause made inside `connection_made`.
Once connected, each side writes straight to the other's transport; when a transport's write
buffer passes its high-water mark the other side stops reading until it drains. An EOF is passed
on with `write_eof()` (half-close); the pair is closed once both sides have sent EOF or either
is lost. With PROXY protocol on, the backend first receives a v1 header
(`PROXY TCP4 <client ip> <listener ip> <client port> <listener port>\\r\\n`).

Requests: every connection forwarded (its backend connection made) counts one, for its endpoint.
When the client's first bytes start with an HTTP/1 method (`HTTP_METHODS`), the connection is
taken for HTTP/1 and each later client->backend burst that follows backend->client data counts
one more: a kept-alive connection's next request. This costs one attribute store per backend read
and one test per client read, and parses nothing, so pipelined requests sent in one burst count
as one, a request body sent after a `100 Continue` counts twice, and an upgraded connection
(WebSocket) counts each message that answers the server's. TLS, HTTP/2 and other protocols count
their connections only.

With no endpoints a listener accepts and closes at once (the client sees EOF, no data): the port
stays bound, so replicas coming back need no rebind and clients fail fast instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import time
from collections.abc import Callable, Container, Mapping, Sequence
from typing import Protocol, cast

from podium.agent.meshspec import (
    CONNECT_TIMEOUT_S,
    Endpoint,
    ListenerSpec,
    Traffic,
    add_traffic,
)
from podium.rules.routing import LEAST_CONNECTIONS, ROUND_ROBIN

EARLY_DATA_LIMIT = 64 * 1024  # bytes buffered per client while its backend connection is made
BACKLOG = 1024
# How an HTTP/1 request starts: a connection whose first bytes match counts its later requests.
HTTP_METHODS = (b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"OPTIONS ", b"PATCH ",
                b"TRACE ", b"CONNECT ")


class Balancer(Protocol):
    """Chooses the endpoint for a new connection; `active` is open connections per key."""

    def pick(self, endpoints: Sequence[Endpoint], active: Mapping[str, int],
             exclude: Container[str]) -> Endpoint | None: ...


class _Rotating:
    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 0  # where the next scan of the endpoints starts


class RoundRobin(_Rotating):
    """Each endpoint in turn."""

    __slots__ = ()

    def pick(self, endpoints: Sequence[Endpoint], active: Mapping[str, int],
             exclude: Container[str]) -> Endpoint | None:
        n = len(endpoints)
        for i in range(n):
            index = (self._next + i) % n
            if endpoints[index].key not in exclude:
                self._next = index + 1
                return endpoints[index]
        return None


class LeastConnections(_Rotating):
    """The endpoint with the fewest open connections; ties go round-robin (as HAProxy's leastconn),
    so sequential short connections still spread over all endpoints."""

    __slots__ = ()

    def pick(self, endpoints: Sequence[Endpoint], active: Mapping[str, int],
             exclude: Container[str]) -> Endpoint | None:
        n = len(endpoints)
        best: Endpoint | None = None
        best_load = 0
        start = self._next
        for i in range(n):
            endpoint = endpoints[(start + i) % n]
            if endpoint.key in exclude:
                continue
            load = active.get(endpoint.key, 0)
            if best is None or load < best_load:
                best, best_load = endpoint, load
        self._next = start + 1 if start + 1 < n else 0
        return best


BALANCERS: dict[str, Callable[[], Balancer]] = {LEAST_CONNECTIONS: LeastConnections,
                                                 ROUND_ROBIN: RoundRobin}


def _balancer(name: str) -> Balancer:
    try:
        return BALANCERS[name]()
    except KeyError:
        raise ValueError(f"unknown balance {name!r} (one of {', '.join(BALANCERS)})") from None


def proxy_header(peer: object, local: object) -> bytes:
    """The PROXY protocol v1 line for a client at `peer` reaching us at `local` (sockaddrs)."""
    if not (isinstance(peer, tuple) and isinstance(local, tuple)):
        return b"PROXY UNKNOWN\r\n"
    src, dst = str(peer[0]), str(local[0])
    if src.startswith("::ffff:") and dst.startswith("::ffff:"):
        src, dst = src[7:], dst[7:]
    family = "TCP6" if ":" in src or ":" in dst else "TCP4"
    return f"PROXY {family} {src} {dst} {peer[1]} {local[1]}\r\n".encode("ascii")


class _Side(asyncio.Protocol):
    """One socket of a proxied pair: what it reads is written to `out`, the other's transport
    (`_ClientSide` or `_BackendSide`)."""

    __slots__ = ("conn", "eof", "other", "out", "transport")

    transport: asyncio.Transport
    other: _Side  # set before anything is written to `transport`

    def __init__(self, conn: _Connection) -> None:
        self.conn = conn
        self.out: asyncio.Transport | None = None  # None only while the client's backend connects
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.conn.connection_made(self)

    def eof_received(self) -> bool:
        self.eof = True
        if self.out is not None:  # else passed on once the backend is connected
            self.pass_eof_on()
        return True

    def pass_eof_on(self) -> None:
        if self.other.eof:
            self.conn.close()
        else:
            # After the other events of this loop iteration: when the other side's EOF is among
            # them (a client closing as soon as it has its answer), both sockets are just
            # closed, without a shutdown() costing a system call and a packet per connection.
            self.conn.loop.call_soon(self._pass_eof_on)

    def _pass_eof_on(self) -> None:
        out = self.out
        if self.conn.closed or out is None:
            return
        if out.can_write_eof():
            out.write_eof()
        else:
            self.conn.close()

    def pause_writing(self) -> None:
        self.other.transport.pause_reading()

    def resume_writing(self) -> None:
        self.other.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        conn = self.conn
        if self is conn.client or self is conn.backend:  # not an attempt given up on
            conn.close()


class _ClientSide(_Side):
    """The client's socket. `turn` is set when the backend has sent data since the client's
    last read (and at first): the client's next bytes then start a new request."""

    __slots__ = ("turn",)

    def __init__(self, conn: _Connection) -> None:  # _Side's, inlined: one per connection
        self.conn = conn
        self.out = None  # set once the backend is connected
        self.eof = False
        self.turn = True

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        conn.traffic.bytes_in += len(data)
        if self.turn:
            self.turn = False
            conn.new_turn(data)
        out = self.out
        if out is not None:
            out.write(data)
        else:
            self.conn.early_data(data)


class _BackendSide(_Side):
    """The backend's socket: `out`, the client's transport, is set before it connects."""

    __slots__ = ()

    other: _ClientSide
    out: asyncio.Transport

    def data_received(self, data: bytes) -> None:
        # The backend has answered: the client's next bytes start a new request.
        self.other.turn = True
        self.conn.traffic.bytes_out += len(data)
        self.out.write(data)


class _RelayedSide(_BackendSide):
    """A backend reached through another node's relay: the relay's first byte says whether it
    reached the replica (b"+"); anything else, or the connection ending first, says not."""

    __slots__ = ("answer",)

    def __init__(self, conn: _Connection) -> None:
        super().__init__(conn)
        self.answer: asyncio.Future[bool] = conn.loop.create_future()

    def data_received(self, data: bytes) -> None:
        if not self.answer.done():
            self.answer.set_result(data[:1] == b"+")
            data = data[1:]
            if not data:
                return
        super().data_received(data)

    def eof_received(self) -> bool:
        if not self.answer.done():
            self.answer.set_result(False)
            return False
        return super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        answer = self.answer
        if not answer.done():
            answer.set_result(False)
        if answer.result():
            super().connection_lost(exc)
        # else refused: the connection's _connect tries another replica


class _Connection:
    """A client connection and its backend connection (the one being made, then the one made)."""

    __slots__ = ("backend", "client", "closed", "early", "early_size", "http", "key", "listener",
                 "loop", "task", "timed_out", "traffic")

    def __init__(self, listener: Listener, loop: asyncio.AbstractEventLoop) -> None:
        self.listener = listener
        self.traffic = listener.traffic
        self.loop = loop
        self.client = _ClientSide(self)
        self.backend: _BackendSide | None = None
        self.key: str | None = None  # the endpoint this connection is counted against
        self.task: asyncio.Task[None] | None = None
        self.early: list[bytes] = []
        self.early_size = 0  # bytes in `early`
        self.closed = False
        self.timed_out = False
        self.http: bool | None = None  # speaks HTTP/1? None until the client's first bytes

    def connection_made(self, side: _Side) -> None:
        if side is not self.client:
            if self.listener.proxy_protocol:
                client = self.client.transport
                side.transport.write(proxy_header(client.get_extra_info("peername"),
                                                  client.get_extra_info("sockname")))
            return
        listener = self.listener
        admit = listener.admit
        if not listener.endpoints or (
                admit is not None and not admit(side.transport.get_extra_info("peername"))):
            self.closed = True
            side.transport.close()
            return
        listener.connections.add(self)
        self.task = self.loop.create_task(self._connect())

    def new_turn(self, data: bytes) -> None:
        """The client sends again after the backend answered (or for the first time)."""
        http = self.http
        if http is None:  # its first bytes: the connection itself counts the first request
            self.http = data.startswith(HTTP_METHODS)
        elif http:
            key = self.key
            if key is not None:
                requests = self.listener.requests
                requests[key] = requests.get(key, 0) + 1

    def early_data(self, data: bytes) -> None:
        self.early.append(data)
        self.early_size += len(data)
        if self.early_size >= EARLY_DATA_LIMIT:
            self.client.transport.pause_reading()

    async def _connect(self) -> None:
        listener, client, task, loop = self.listener, self.client, self.task, self.loop
        failed: set[str] = set()
        while True:
            endpoint = listener.balancer.pick(listener.endpoints, listener.active, failed)
            if endpoint is None:  # none left to try
                self.task = None  # close() must not cancel the task running it
                self.close()
                return
            self.key = key = endpoint.key
            listener.active[key] = listener.active.get(key, 0) + 1
            self.backend = backend = _RelayedSide(self) if endpoint.preamble else _BackendSide(self)
            backend.other = client
            backend.out = client.transport
            client.other = backend  # the backend may write (and fill the client's buffer) at once
            # A timer rather than asyncio.timeout(): that looks the running loop up twice, and
            # each look-up is a getpid() system call; this path runs once per connection.
            timer = loop.call_later(listener.connect_timeout, self._time_out)
            # Not loop.time(): uvloop's is in whole milliseconds, cached per loop iteration.
            started = time.perf_counter()
            try:
                await loop.create_connection(lambda: backend, endpoint.host, endpoint.port)  # noqa: B023
                if endpoint.preamble:
                    backend.transport.write(endpoint.preamble)
                    if not await cast(_RelayedSide, backend).answer:
                        raise ConnectionRefusedError("the relay did not reach the replica")
                self.traffic.connected(time.perf_counter() - started)
                break
            except OSError:  # refused, unreachable, unresolvable
                pass
            except asyncio.CancelledError:
                if not self.timed_out or self.closed or task is None:
                    raise
                task.uncancel()
                self.timed_out = False
            finally:
                timer.cancel()
            transport = getattr(backend, "transport", None)
            if transport is not None:  # connected to a relay that did not reach the replica
                self.backend = None  # so that its connection_lost leaves the client alone
                transport.abort()
            self._release()
            failed.add(key)
            self.traffic.connect_failures += 1
        requests = listener.requests
        requests[key] = requests.get(key, 0) + 1
        if self.closed:  # the client went away, or the listener was stopped, meanwhile
            return  # and close() closed the backend too
        client.out = out = backend.transport
        if self.early:
            out.writelines(self.early)
            self.early, self.early_size = [], 0
        if client.eof:
            client.pass_eof_on()
        else:
            client.transport.resume_reading()

    def _time_out(self) -> None:
        if self.task is not None:
            self.timed_out = True
            self.task.cancel()

    def _release(self) -> None:
        key, self.key = self.key, None
        if key is not None:
            self.listener.release(key)

    def close(self, *, abort: bool = False) -> None:
        """Closes both sides (flushing what is buffered, unless `abort`); idempotent."""
        if self.closed:
            return
        self.closed = True
        self.listener.connections.discard(self)
        self._release()
        if self.task is not None and not self.task.done():
            self.task.cancel()
        for side in (self.client, self.backend):
            # A backend still connecting has no transport yet: cancelling the task cleans up.
            transport = getattr(side, "transport", None)
            if transport is not None:
                if abort:
                    transport.abort()
                else:
                    transport.close()


class Listener:
    """One published port: accepts connections and forwards each to an endpoint."""

    def __init__(self, *, port: int, host: str = "0.0.0.0", balance: str = LEAST_CONNECTIONS,
                 proxy_protocol: bool = False, connect_timeout: float = CONNECT_TIMEOUT_S,
                 sock: socket.socket | None = None,
                 admit: Callable[[object], bool] | None = None) -> None:
        self.host = host
        self.admit = admit
        self._sock = sock  # handed to the server at start()
        self.connect_timeout = connect_timeout
        self.balance = balance
        self.balancer = _balancer(balance)
        self.proxy_protocol = proxy_protocol
        self.endpoints: tuple[Endpoint, ...] = ()
        self.active: dict[str, int] = {}  # endpoint key -> connections (connecting or open)
        self.requests: dict[str, int] = {}  # endpoint key -> requests forwarded, only grows
        # Bytes each way, backend connections failed (refused, unreachable, timed out) and
        # connect times: counters that only grow.
        self.traffic = Traffic()
        self.connections: set[_Connection] = set()
        self._port = port
        self._server: asyncio.AbstractServer | None = None

    @property
    def port(self) -> int:
        """The bound port once started (the requested one before)."""
        return self._port

    async def start(self) -> None:
        """Binds the port (unless given a socket); OSError (e.g. EADDRINUSE) when it cannot."""
        if self._server is not None:
            return
        loop = asyncio.get_running_loop()
        sock, self._sock = self._sock, None
        if sock is None:
            sock = listening_socket(self.host, self._port)
        try:
            self._server = await loop.create_server(
                lambda: _Connection(self, loop).client, sock=sock, backlog=BACKLOG)
        except BaseException:
            sock.close()
            raise
        self._port = sock.getsockname()[1]

    async def stop(self, *, close_connections: bool = False) -> None:
        """Closes the listening socket (idempotent); with `close_connections`, aborts the
        connections it accepted too, else they finish on their own."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        if close_connections:
            connections = list(self.connections)
            tasks = [c.task for c in connections if c.task is not None]
            for connection in connections:
                connection.close(abort=True)
            await asyncio.gather(*tasks, return_exceptions=True)
        # One loop iteration: uvloop releases closed handles (and their ports) on its next one.
        await asyncio.sleep(0)

    async def __aenter__(self) -> Listener:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop(close_connections=True)

    def set_endpoints(self, endpoints: Sequence[Endpoint]) -> None:
        """Replaces the endpoint set for new connections; established ones are left to drain."""
        self.endpoints = tuple(endpoints)

    def configure(self, *, balance: str, proxy_protocol: bool,
                  admit: Callable[[object], bool] | None = None) -> None:
        """Changes how new connections are admitted, balanced and introduced to their
        backend."""
        self.admit = admit
        if balance != self.balance:
            self.balancer = _balancer(balance)
            self.balance = balance
        self.proxy_protocol = proxy_protocol

    def release(self, key: str) -> None:
        left = self.active[key] - 1
        if left:
            self.active[key] = left
        else:
            del self.active[key]

    def stats(self) -> dict[str, int]:
        """Endpoint key -> connections through this listener (current endpoints and draining)."""
        counts = {e.key: self.active.get(e.key, 0) for e in self.endpoints}
        counts.update(self.active)
        return counts


class Mesh:
    """All listeners of an agent, reconciled to a wanted set by `apply`."""

    def __init__(self, *, host: str = "0.0.0.0", connect_timeout: float = CONNECT_TIMEOUT_S,
                 sockets: Callable[[int], socket.socket] | None = None) -> None:
        self.host = host
        self.connect_timeout = connect_timeout
        self._sockets = sockets
        self._listeners: dict[int, Listener] = {}
        self._draining: list[Listener] = []  # stopped, with connections still open
        # Requests through listeners gone (drained or closed): port -> endpoint key -> count.
        self._retired: dict[int, dict[str, int]] = {}
        self._retired_traffic: dict[int, Traffic] = {}  # the same for their traffic
        self._lock = asyncio.Lock()

    async def apply(self, wanted: Mapping[int, ListenerSpec]) -> list[str]:
        """Makes exactly `wanted` listen; returns one error per port that could not."""
        errors: list[str] = []
        async with self._lock:
            for port in sorted(set(self._listeners) - set(wanted)):
                listener = self._listeners.pop(port)
                await listener.stop()
                self._draining.append(listener)
            for listener in self._draining:
                if not listener.connections:
                    self._retire(listener)
            self._draining = [d for d in self._draining if d.connections]
            for port, spec in sorted(wanted.items()):
                error = await self._apply_one(port, spec)
                if error:
                    errors.append(error)
        return errors

    async def _apply_one(self, port: int, spec: ListenerSpec) -> str | None:
        listener = self._listeners.get(port)
        try:
            if listener is not None:
                listener.configure(balance=spec.balance, proxy_protocol=spec.proxy_protocol,
                                   admit=spec.admit)
                listener.set_endpoints(spec.endpoints)
                return None
            sock = None
            if self._sockets is not None:
                try:
                    sock = self._sockets(port)
                except KeyError:
                    return f"port {port}: no listening socket was handed over"
            listener = Listener(port=port, host=self.host, balance=spec.balance,
                                proxy_protocol=spec.proxy_protocol,
                                connect_timeout=self.connect_timeout, sock=sock,
                                admit=spec.admit)
            listener.set_endpoints(spec.endpoints)
            await listener.start()
        except (OSError, ValueError) as exc:
            return port_error(port, exc)
        self._listeners[port] = listener
        return None

    def stats(self) -> dict[int, dict[str, int]]:
        """Published port -> endpoint key -> open connections; a port no longer wanted shows
        while its connections drain."""
        counts = {port: listener.stats() for port, listener in self._listeners.items()}
        for listener in self._draining:
            if listener.active:
                per_key = counts.setdefault(listener.port, {})
                for key, n in listener.active.items():
                    per_key[key] = per_key.get(key, 0) + n
        return counts

    def requests(self) -> dict[int, dict[str, int]]:
        """Published port -> endpoint key -> requests forwarded since the mesh was made, every
        current endpoint listed, ports and endpoints no longer served included (counters: they
        never decrease)."""
        counts = {port: dict(per_key) for port, per_key in self._retired.items()}
        for listener in [*self._listeners.values(), *self._draining]:
            _add(counts.setdefault(listener.port, {}), listener.requests)
        for listener in self._listeners.values():
            per_key = counts[listener.port]
            for endpoint in listener.endpoints:
                per_key.setdefault(endpoint.key, 0)
        return counts

    def traffic(self) -> dict[int, Traffic]:
        """Published port -> what its listeners moved since the mesh was made (counters, ports
        no longer served included)."""
        total: dict[int, Traffic] = {}
        add_traffic(total, self._retired_traffic)
        for listener in [*self._listeners.values(), *self._draining]:
            total.setdefault(listener.port, Traffic()).add(listener.traffic)
        return total

    def _retire(self, listener: Listener) -> None:
        """Keeps the counts of a listener that is dropped."""
        _add(self._retired.setdefault(listener.port, {}), listener.requests)
        self._retired_traffic.setdefault(listener.port, Traffic()).add(listener.traffic)

    async def close(self) -> None:
        """Stops every listener and aborts their connections; idempotent."""
        async with self._lock:
            listeners = [*self._listeners.values(), *self._draining]
            self._listeners, self._draining = {}, []
            for listener in listeners:
                await listener.stop(close_connections=True)
                self._retire(listener)

    async def __aenter__(self) -> Mesh:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _add(total: dict[str, int], counts: Mapping[str, int]) -> None:
    for key, n in counts.items():
        total[key] = total.get(key, 0) + n


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port and listening, non-blocking; OSError when it cannot."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=BACKLOG)
    sock.setblocking(False)
    return sock


def port_error(port: int, exc: Exception) -> str:
    """How a port that cannot be served is reported ("port 8080 in use: ...")."""
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return f"port {port} in use: {exc}"
    return f"port {port}: {exc}"


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop when installed (the faster data path), else asyncio's."""
    with contextlib.suppress(ImportError):
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()
