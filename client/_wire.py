"""gRPC calls over HTTP/2 on a TLS socket, for the client library: unary calls and server
streams (all the Control API has), without grpcio, which added about 30 ms to the start of
every `podium` command (its modules: 102 ms with grpcio, 74 ms without; bench/cli_start.py).

    channel = Channel("10.0.0.5:7070", context, server_name="podium-manager")
    reply = channel.unary("/podium.v1.Control/ListServices", request_bytes, timeout=10.0)
    for message in channel.stream("/podium.v1.Control/WatchEvents", request_bytes):
        ...

A `Channel` holds one connection (made on first use, made again after it failed) that any number
of threads share. Nothing runs in the background: a thread that waits for its call's frames reads
the socket for every call (one thread at a time), and the others are woken when theirs arrive. So
the TLS object is only ever used under one lock, and a call's deadline bounds everything it does.

HTTP/2 as gRPC uses it (RFC 9113): request headers in one HEADERS frame (literal fields, no
dynamic table: nothing to keep in step with the server), the request's message in DATA frames
within the server's flow-control windows; responses' header blocks decoded with `hpack` (they
may use the dynamic table and Huffman codes), flow-control windows of WINDOW bytes that are
replenished as frames are read, PINGs and SETTINGS acknowledged, GOAWAY and RST_STREAM honoured.
Failures are `RpcError`s carrying a gRPC status code: UNAVAILABLE for a connection that could
not be made or broke, DEADLINE_EXCEEDED for a call past its deadline.
"""

from __future__ import annotations

import contextlib
import enum
import os
import select
import socket
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Iterator
from urllib.parse import unquote

import hpack

__all__ = ["Call", "Channel", "RpcError", "StatusCode"]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
WINDOW = 16 * 1024 * 1024  # our receive window, per stream and for the connection
MAX_MESSAGE = 256 * 1024 * 1024  # a larger response is refused (RESOURCE_EXHAUSTED)
READ_SLICE_S = 0.1  # a reading thread looks at its call's deadline (and a cancel) this often
CONNECT_TIMEOUT_S = 10.0

# Frame types and flags (RFC 9113, section 6).
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
# Settings.
ENABLE_PUSH, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE = 0x2, 0x4, 0x5
DEFAULT_WINDOW, DEFAULT_FRAME = 65_535, 16_384
_PREFIX = struct.Struct(">BI")  # a gRPC message's compressed flag and length


class StatusCode(enum.IntEnum):
    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class RpcError(Exception):
    """A call that did not end with OK: its status `code`, the server's `details` and the
    trailing metadata (`trailers`: (name, value) pairs)."""

    def __init__(self, code: StatusCode, details: str,
                 trailers: tuple[tuple[str, str], ...] = (), *, refused: bool = False) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details
        self.trailers = trailers
        self.refused = refused  # the server did not process the call: it may be sent again


# A stream reset by the server, as gRPC maps HTTP/2 error codes (REFUSED_STREAM: not processed).
_RESETS = {0x7: StatusCode.UNAVAILABLE, 0x8: StatusCode.CANCELLED,
           0xB: StatusCode.RESOURCE_EXHAUSTED, 0xC: StatusCode.PERMISSION_DENIED}


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes((kind, flags)) + \
        struct.pack(">I", stream) + payload


def _literal(name: str, value: str) -> bytes:
    """One header field as a literal without indexing, its name and value not Huffman-coded."""
    out = bytearray(b"\x00")
    for text in (name.encode(), value.encode()):
        out += _integer(len(text), 7) + text
    return bytes(out)


def _integer(value: int, prefix: int) -> bytes:
    """HPACK's integer representation (RFC 7541, 5.1), the prefix's other bits 0."""
    top = (1 << prefix) - 1
    if value < top:
        return bytes((value,))
    out = bytearray((top,))
    value -= top
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def _timeout_header(seconds: float) -> str:
    millis = max(1, int(seconds * 1000))
    return f"{millis}m" if millis < 100_000_000 else f"{min(int(seconds), 99_999_999)}S"


class _Stream:
    """One call's state, changed by whichever thread reads the connection (under its lock)."""

    def __init__(self, ident: int, send_window: int) -> None:
        self.id = ident
        self.send_window = send_window
        self.headers: list[tuple[str, str]] | None = None
        self.trailers: list[tuple[str, str]] | None = None
        self.buffer = bytearray()
        self.messages: deque[bytes] = deque()
        self.unacknowledged = 0  # bytes read since our last WINDOW_UPDATE for it
        self.ended = False  # END_STREAM seen, or reset
        self.error: RpcError | None = None  # set when the stream failed outside a status

    def take(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= 5:
            compressed, length = _PREFIX.unpack_from(self.buffer)
            if length > MAX_MESSAGE:
                self.error = RpcError(StatusCode.RESOURCE_EXHAUSTED,
                                      f"a response of {length} bytes is over the client's "
                                      f"limit of {MAX_MESSAGE}")
                return
            if len(self.buffer) < 5 + length:
                return
            if compressed:
                self.error = RpcError(StatusCode.INTERNAL, "a compressed response, which the "
                                      "client did not ask for")
                return
            self.messages.append(bytes(self.buffer[5:5 + length]))
            del self.buffer[:5 + length]

    def status(self) -> RpcError | None:
        """The call's failure once it ended (None: OK)."""
        if self.error is not None:
            return self.error
        fields = dict(self.trailers or self.headers or ())
        http = fields.get(":status", "200")
        if http != "200" and "grpc-status" not in fields:
            return RpcError(StatusCode.UNAVAILABLE if http in ("502", "503", "504")
                            else StatusCode.UNKNOWN, f"the server answered HTTP {http}")
        try:
            code = StatusCode(int(fields.get("grpc-status", "")))
        except ValueError:
            return RpcError(StatusCode.UNKNOWN, "the response ended without a gRPC status")
        if code == StatusCode.OK:
            if self.buffer:
                return RpcError(StatusCode.INTERNAL, "the response ended inside a message")
            return None
        details = unquote(fields.get("grpc-message", ""), errors="replace")
        pairs = tuple((k, v) for k, v in (self.trailers or self.headers or ())
                      if not k.startswith(":") and not k.startswith("grpc-"))
        return RpcError(code, details or code.name, pairs)


class _Connection:
    def __init__(self, sock: ssl.SSLSocket, authority: str) -> None:
        self._sock = sock
        self.authority = authority
        self._io = threading.Lock()  # every use of the TLS object
        self._state = threading.Condition()  # streams, windows, `_reading`, `dead`
        self._reading = False  # a thread reads the socket
        # Written to when a call is cancelled or the connection fails: wakes the reading
        # thread out of its select() at once.
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._streams: dict[int, _Stream] = {}
        self._next_id = 1
        self._in = bytearray()
        self._block: bytearray | None = None  # a header block awaiting its CONTINUATIONs
        self._block_stream = 0
        self._block_ends = False
        self._decoder = hpack.Decoder()
        self._send_window = DEFAULT_WINDOW  # the server's window for the connection
        self._stream_window = DEFAULT_WINDOW  # its initial window for each stream
        self._max_frame = DEFAULT_FRAME
        self._unacknowledged = 0
        self._last_stream = 2**31 - 1  # a GOAWAY's: streams above it were not processed
        self.dead: RpcError | None = None

    @classmethod
    def open(cls, host: str, port: int, context: ssl.SSLContext, server_name: str,
             timeout: float) -> _Connection:
        try:
            raw = socket.create_connection((host, port), timeout=timeout)
        except OSError as err:
            raise RpcError(StatusCode.UNAVAILABLE, f"failed to connect to {host}:{port}: "
                           f"{err.strerror or err}") from None
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock = context.wrap_socket(raw, server_hostname=server_name)
            if sock.selected_alpn_protocol() != "h2":
                raise ssl.SSLError(f"{host}:{port} does not speak HTTP/2 (ALPN)")
            connection = cls(sock, f"{host}:{port}")
            settings = struct.pack(">HIHI", ENABLE_PUSH, 0, INITIAL_WINDOW_SIZE, WINDOW)
            sock.sendall(PREFACE + _frame(SETTINGS, 0, 0, settings)
                         + _frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", WINDOW - DEFAULT_WINDOW)))
            sock.setblocking(False)
            return connection
        except (OSError, ssl.SSLError) as err:
            raw.close()
            raise RpcError(StatusCode.UNAVAILABLE,
                           f"TLS with {host}:{port} failed: {err}") from None

    # -- calls -----------------------------------------------------------------------------

    def start(self, path: str, request: bytes, deadline: float | None) -> _Stream:
        fields = [(":method", "POST"), (":scheme", "https"), (":path", path),
                  (":authority", self.authority), ("te", "trailers"),
                  ("content-type", "application/grpc"), ("user-agent", "podium-client")]
        if deadline is not None:
            fields.append(("grpc-timeout", _timeout_header(deadline - time.monotonic())))
        block = b"".join(_literal(name, value) for name, value in fields)
        # Streams must open in the order of their ids: one is taken and opened under `_io`.
        with self._io:
            with self._state:
                if self.dead is not None:  # found dead before this call was sent
                    raise RpcError(self.dead.code, self.dead.details, refused=True)
                if self._next_id > self._last_stream or self._next_id >= 2**31:
                    raise RpcError(StatusCode.UNAVAILABLE, "the connection is closing",
                                   refused=True)
                stream = _Stream(self._next_id, self._stream_window)
                self._next_id += 2
                self._streams[stream.id] = stream
            failure = self._send(_frame(HEADERS, END_HEADERS, stream.id, block))
        if failure is not None:
            self._fail(failure)
            raise failure
        self._send_message(stream, _PREFIX.pack(0, len(request)) + request, deadline)
        return stream

    def _send_message(self, stream: _Stream, data: bytes, deadline: float | None) -> None:
        view = memoryview(data)
        while True:
            with self._state:
                if stream.ended or stream.error is not None:
                    return  # answered (or reset) before it read the whole request
                while (size := min(self._send_window, stream.send_window, self._max_frame,
                                   len(view))) <= 0:
                    self._raise_if_dead()
                    if stream.ended:
                        return  # answered (or reset) before it read the whole request
                    self._wait_for_frames(deadline)
                self._send_window -= size
                stream.send_window -= size
            last = size == len(view)
            self._write(_frame(DATA, END_STREAM if last else 0, stream.id, bytes(view[:size])))
            view = view[size:]
            if last:
                return

    def next_message(self, stream: _Stream, deadline: float | None) -> bytes | None:
        """The stream's next message; None once it ended with OK. Raises its failure."""
        with self._state:
            while True:
                if stream.messages:
                    return stream.messages.popleft()
                if stream.error is not None or stream.ended:
                    self._streams.pop(stream.id, None)
                    failure = stream.status()
                    if failure is not None:
                        raise failure
                    return None
                if self.dead is not None:
                    raise self.dead
                self._wait_for_frames(deadline)

    def cancel(self, stream: _Stream) -> None:
        """Ends the call; the server is told unless it ended it (a call that failed here, on a
        reply over the limit, is told too)."""
        with self._state:
            self._streams.pop(stream.id, None)
            if stream.ended:
                return
            stream.ended = True
            if stream.error is None:
                stream.error = RpcError(StatusCode.CANCELLED, "cancelled by the client")
            self._state.notify_all()
        self._wake()
        if self.dead is None:
            try:
                self._write(_frame(RST_STREAM, 0, stream.id, struct.pack(">I", 0x8)))
            except RpcError:
                pass  # the connection broke: the server forgets the call by itself

    def close(self) -> None:
        self._fail(RpcError(StatusCode.UNAVAILABLE, "the channel was closed"))

    def poll(self) -> None:
        """Handles what arrived meanwhile (a GOAWAY, the server closing an idle connection)
        without waiting, so that a new call does not go out on a connection known to be gone."""
        with self._state:
            if self._reading:
                return
            self._reading = True
        try:
            self._read(0.0)
        finally:
            with self._state:
                self._reading = False
                self._state.notify_all()

    # -- reading ---------------------------------------------------------------------------

    def _wait_for_frames(self, deadline: float | None) -> None:
        """Called with `_state` held: returns after some frames were read (by this thread, or by
        another, which wakes it) or after a short while; raises past `deadline`."""
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise RpcError(StatusCode.DEADLINE_EXCEEDED, "deadline exceeded")
        slice_s = READ_SLICE_S if left is None else min(left, READ_SLICE_S)
        if self._reading:
            self._state.wait(slice_s)
            return
        self._reading = True
        self._state.release()
        try:
            self._read(slice_s)
        finally:
            self._state.acquire()
            self._reading = False
            self._state.notify_all()

    def _read(self, wait: float) -> None:
        """Reads what arrives within `wait` seconds and handles its frames (without `_state`)."""
        try:
            with self._io:
                pending = self._sock.pending()
            if not pending:
                sock = self._sock.fileno()
                readable, _, _ = select.select([sock, self._wake_r], [], [], wait)
                if self._wake_r in readable:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                if sock not in readable:
                    return
            with self._io:
                try:
                    data = self._sock.recv(1 << 16)
                except (ssl.SSLWantReadError, BlockingIOError):
                    return
            if not data:
                raise ConnectionError("the server closed the connection")
            self._in += data
            self._frames()
        except (OSError, ValueError, hpack.HPACKError) as err:
            self._fail(RpcError(StatusCode.UNAVAILABLE, f"connection to {self.authority} "
                                f"lost: {err}"))

    def _frames(self) -> None:
        while len(self._in) >= 9:
            length = int.from_bytes(self._in[:3], "big")
            kind, flags = self._in[3], self._in[4]
            ident = int.from_bytes(self._in[5:9], "big") & 0x7FFF_FFFF
            if len(self._in) < 9 + length:
                return
            payload = bytes(self._in[9:9 + length])
            del self._in[:9 + length]
            self._frame(kind, flags, ident, payload)

    def _frame(self, kind: int, flags: int, ident: int, payload: bytes) -> None:
        if self._block is not None and kind != CONTINUATION:
            raise ValueError("a header block was interrupted")
        if kind == DATA:
            self._data(flags, ident, payload)
        elif kind == HEADERS:
            if flags & PADDED:
                payload = payload[1:len(payload) - payload[0]]
            if flags & PRIORITY_FLAG:
                payload = payload[5:]
            self._block, self._block_stream = bytearray(payload), ident
            self._block_ends = bool(flags & END_STREAM)
            if flags & END_HEADERS:
                self._headers()
        elif kind == CONTINUATION:
            if self._block is None or ident != self._block_stream:
                raise ValueError("an unexpected CONTINUATION frame")
            self._block += payload
            if flags & END_HEADERS:
                self._headers()
        elif kind == RST_STREAM:
            (code,) = struct.unpack(">I", payload[:4])
            with self._state:
                stream = self._streams.get(ident)
                if stream is not None and not stream.ended:
                    stream.ended = True
                    stream.error = RpcError(_RESETS.get(code, StatusCode.INTERNAL),
                                            f"the server reset the call (HTTP/2 error {code})",
                                            refused=code == 0x7)
        elif kind == SETTINGS:
            if not flags & ACK:
                self._settings(payload)
                self._write(_frame(SETTINGS, ACK, 0))
        elif kind == PING:
            if not flags & ACK:
                self._write(_frame(PING, ACK, 0, payload))
        elif kind == GOAWAY:
            last, code = struct.unpack(">II", payload[:8])
            self._goaway(last & 0x7FFF_FFFF, code, payload[8:])
        elif kind == WINDOW_UPDATE:
            (increment,) = struct.unpack(">I", payload[:4])
            with self._state:
                if ident == 0:
                    self._send_window += increment & 0x7FFF_FFFF
                elif (stream := self._streams.get(ident)) is not None:
                    stream.send_window += increment & 0x7FFF_FFFF
        elif kind == PUSH_PROMISE:
            raise ValueError("a PUSH_PROMISE, which the client disabled")
        # PRIORITY and unknown frame types are ignored, as the protocol requires.

    def _data(self, flags: int, ident: int, payload: bytes) -> None:
        counted = len(payload)
        if flags & PADDED:
            payload = payload[1:len(payload) - payload[0]]
        updates = b""
        with self._state:
            self._unacknowledged += counted
            if self._unacknowledged >= WINDOW // 2:
                updates += _frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", self._unacknowledged))
                self._unacknowledged = 0
            stream = self._streams.get(ident)
            if stream is not None and not stream.ended and stream.error is None:
                stream.take(payload)
                stream.unacknowledged += counted
                if flags & END_STREAM:
                    stream.ended = True
                elif stream.unacknowledged >= WINDOW // 2:
                    updates += _frame(WINDOW_UPDATE, 0, ident,
                                      struct.pack(">I", stream.unacknowledged))
                    stream.unacknowledged = 0
        if updates:
            self._write(updates)

    def _headers(self) -> None:
        assert self._block is not None
        fields = [(str(k), str(v)) for k, v in self._decoder.decode(bytes(self._block), raw=False)]
        ident, ends = self._block_stream, self._block_ends
        self._block = None
        with self._state:
            stream = self._streams.get(ident)
            if stream is None or stream.ended:
                return  # decoded all the same: the table is the connection's
            if stream.headers is None:
                stream.headers = fields
            else:
                stream.trailers = fields
            if ends:
                stream.ended = True

    def _settings(self, payload: bytes) -> None:
        with self._state:
            for offset in range(0, len(payload) - len(payload) % 6, 6):
                key, value = struct.unpack_from(">HI", payload, offset)
                if key == INITIAL_WINDOW_SIZE:
                    delta = value - self._stream_window
                    self._stream_window = value
                    for stream in self._streams.values():
                        stream.send_window += delta
                elif key == MAX_FRAME_SIZE:
                    self._max_frame = value

    def _goaway(self, last: int, code: int, debug: bytes) -> None:
        text = debug.decode(errors="replace") or f"HTTP/2 error {code}"
        with self._state:
            self._last_stream = min(self._last_stream, last)
            for ident, stream in self._streams.items():
                if ident > last and not stream.ended:
                    stream.ended = True
                    stream.error = RpcError(StatusCode.UNAVAILABLE,
                                            f"the server is closing the connection ({text})",
                                            refused=True)

    # -- writing and failing ---------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        with self._io:
            failure = self._send(data)
        if failure is not None:
            self._fail(failure)
            raise failure

    def _send(self, data: bytes) -> RpcError | None:
        """Writes `data` whole (with `_io` held); the failure, if the connection broke."""
        view = memoryview(data)
        try:
            while view:
                try:
                    view = view[self._sock.send(view):]
                except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                    select.select([], [self._sock], [], READ_SLICE_S)
        except (OSError, ValueError) as err:
            return RpcError(StatusCode.UNAVAILABLE, f"connection to {self.authority} lost: {err}")
        return None

    def _fail(self, error: RpcError) -> None:
        with self._state:
            if self.dead is None:
                self.dead = error
            for stream in self._streams.values():
                if not stream.ended and stream.error is None:
                    stream.error = error
                    stream.ended = True
            self._state.notify_all()
        self._wake()
        with self._io:
            try:
                self._sock.close()
            except OSError:
                pass

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"!")

    def __del__(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _raise_if_dead(self) -> None:
        if self.dead is not None:
            raise self.dead

    @property
    def usable(self) -> bool:
        return self.dead is None and self._next_id <= self._last_stream


class Call:
    """A server stream's messages (bytes); `cancel()` ends it, also from another thread."""

    def __init__(self, connection: _Connection, stream: _Stream, deadline: float | None) -> None:
        self._connection = connection
        self._stream = stream
        self._deadline = deadline

    def __iter__(self) -> Iterator[bytes]:
        while (message := self._connection.next_message(self._stream, self._deadline)) \
                is not None:
            yield message

    def cancel(self) -> None:
        self._connection.cancel(self._stream)


class Channel:
    """Calls to one server at HOST:PORT over TLS (`context`, its certificate checked against
    `server_name`)."""

    def __init__(self, address: str, context: ssl.SSLContext, *, server_name: str) -> None:
        host, _, port = address.rpartition(":")
        self.address = address
        self._host, self._port = host.strip("[]"), int(port)
        self._context = context
        self._server_name = server_name
        self._lock = threading.Lock()
        self._connection: _Connection | None = None

    def _connect(self, deadline: float | None) -> _Connection:
        with self._lock:
            if self._connection is not None and self._connection.usable:
                self._connection.poll()
            if self._connection is None or not self._connection.usable:
                if self._connection is not None:
                    self._connection.close()
                timeout = CONNECT_TIMEOUT_S if deadline is None else \
                    max(min(deadline - time.monotonic(), CONNECT_TIMEOUT_S), 0.05)
                self._connection = _Connection.open(self._host, self._port, self._context,
                                                    self._server_name, timeout)
            return self._connection

    def _start(self, path: str, request: bytes,
               deadline: float | None) -> tuple[_Connection, _Stream]:
        """A call opened on the connection, or on a new one when the server turned it away
        unprocessed (it was closing the connection)."""
        try:
            connection = self._connect(deadline)
            return connection, connection.start(path, request, deadline)
        except RpcError as err:
            if not err.refused:
                raise
        connection = self._connect(deadline)
        return connection, connection.start(path, request, deadline)

    def unary(self, path: str, request: bytes, *, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        for attempt in (1, 2):
            connection, stream = self._start(path, request, deadline)
            try:
                reply = connection.next_message(stream, deadline)
                if reply is None:
                    raise RpcError(StatusCode.INTERNAL, "the call ended without a reply")
                if connection.next_message(stream, deadline) is not None:
                    raise RpcError(StatusCode.INTERNAL, "more than one reply to a unary call")
                return reply
            except RpcError as err:
                connection.cancel(stream)
                if not (err.refused and attempt == 1):
                    raise
            except BaseException:
                connection.cancel(stream)
                raise
        raise AssertionError("unreachable")

    def stream(self, path: str, request: bytes, *, timeout: float | None = None) -> Call:
        deadline = None if timeout is None else time.monotonic() + timeout
        connection, stream = self._start(path, request, deadline)
        return Call(connection, stream, deadline)

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None
