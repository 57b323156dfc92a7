"""Hostile input at the manager's gRPC server: malformed and oversized request messages.

`RequestGuard` is a server interceptor that takes over decoding every request message of every
service served (Control, Dispatcher, health, reflection). Contract:
- A request that is not a valid protobuf message of the method's request type ends its call with
  INVALID_ARGUMENT ("request is not a valid podium.v1.XRequest"); the servicer never sees it. On a
  stream (the Dispatcher's session) the first malformed message ends that session the same way,
  as if the agent had gone; nothing else changes.
- A request larger than its service's limit (`LIMITS`, e.g. 8 MiB for Control) ends its call with
  RESOURCE_EXHAUSTED. gRPC itself refuses anything above `MAX_RECEIVE_BYTES` (the largest
  limit, set on the server) before it reaches Python.
- Neither writes a traceback: the manager logs one warning line per `LOG_INTERVAL_S` at most,
  with the count of the ones it did not log since (`RateLimitedLog`).

Without it, grpc.aio answers a request its deserializer cannot decode with UNKNOWN and logs a
full traceback per call: 2,400 garbage requests wrote 2,400 tracebacks.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn

import grpc
from google.protobuf.message import DecodeError

log = logging.getLogger(__name__)

MIB = 1 << 20
# Control: specs and requests from operators; a service spec is a few KiB, 8 MiB leaves room
# for very large ones (thousands of environment variables, big configs).
CONTROL_MAX_BYTES = 8 * MIB
# Dispatcher: an agent's status report for every task of its node in one message. Measured: a
# node with 5,000 tasks, each with its 20 recent events, reports 6.7 MiB (and the manager's
# complete Assignments for those 5,000 tasks is 8.8 MiB the other way); 64 MiB leaves room for
# large specs echoed back in statuses.
DISPATCHER_MAX_BYTES = 64 * MIB
# Any other service (health, reflection): small requests.
DEFAULT_MAX_BYTES = 1 * MIB
LIMITS: dict[str, int] = {
    "podium.v1.Control": CONTROL_MAX_BYTES,
    "podium.v1.Dispatcher": DISPATCHER_MAX_BYTES,
}
# What gRPC itself accepts (grpc.max_receive_message_length): the largest per-service limit.
MAX_RECEIVE_BYTES = max(DEFAULT_MAX_BYTES, *LIMITS.values())
LOG_INTERVAL_S = 10.0

Deserializer = Callable[[bytes], Any]
# What a call's task is cancelled with when its caller's certificate is revoked (security.py's
# Authority): the guard then ends the call with UNAUTHENTICATED. A handler that just ends
# cancelled would leave the call open: gRPC sends no status for it.
REVOKED = "the caller's certificate was revoked"


class RateLimitedLog:
    """At most one warning per `interval` seconds; the lines not written are counted, and the
    next line written says how many there were (a burst's count shows with the next one)."""

    def __init__(self, logger: logging.Logger, *, interval: float = LOG_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = logger
        self._interval = interval
        self._clock = clock
        self._next = float("-inf")
        self.suppressed = 0
        self.written = 0

    def warning(self, msg: str, *args: object) -> None:
        now = self._clock()
        if now < self._next:
            self.suppressed += 1
            return
        self._next = now + self._interval
        if self.suppressed:
            msg += " (%d more like it in the last %.0f s not logged)"
            args = (*args, self.suppressed, self._interval)
            self.suppressed = 0
        self.written += 1
        self._log.warning(msg, *args)


class Refused(Exception):
    """A request message refused before the servicer saw it: the status and details to end
    the call with."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


def _type_name(deserializer: Deserializer) -> str:
    # Generated handlers pass `SomeMessage.FromString`, a classmethod bound to the message class.
    owner = getattr(deserializer, "__self__", None)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    return str(getattr(descriptor, "full_name", "request message"))


class RequestGuard(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc.aio is untyped
    """Decodes every request message itself (see the module docstring). Handlers are wrapped
    once per method and cached: the set of methods is fixed when the server starts."""

    def __init__(self, *, limits: dict[str, int] | None = None,
                 default_limit: int = DEFAULT_MAX_BYTES, reporter: RateLimitedLog | None = None,
                 admit: Callable[[str, Any], None] | None = None) -> None:
        """`admit(method, context)`, when given, runs first in every call: it raises Refused
        for a caller that may not make it (and may note who the caller is for the call)."""
        self._admit = admit
        self._limits = LIMITS if limits is None else limits
        self._default_limit = default_limit
        self.report = reporter or RateLimitedLog(log)
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method: str = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None:
            return cached
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler  # unknown method: gRPC answers UNIMPLEMENTED
        wrapped = self._wrap(method, handler) if handler.request_deserializer else handler
        if wrapped is handler and self._admit is not None:
            wrapped = _denied(method)  # a handler it cannot wrap would skip admission
        if wrapped is not handler:
            self._wrapped[method] = wrapped
        return wrapped

    def _decoder(self, method: str, deserializer: Deserializer) -> Callable[[bytes], Any]:
        service = method.lstrip("/").rsplit("/", 1)[0]
        limit = self._limits.get(service, self._default_limit)
        type_name = _type_name(deserializer)

        def decode(raw: bytes) -> Any:
            if len(raw) > limit:
                raise Refused(grpc.StatusCode.RESOURCE_EXHAUSTED,
                               f"request of {len(raw)} bytes is larger than {service}'s "
                               f"limit of {limit} bytes")
            try:
                return deserializer(raw)
            except (DecodeError, ValueError, TypeError, RuntimeError) as err:
                # Protobuf's Python and upb backends raise DecodeError; the others cover what a
                # backend may raise on bytes it cannot parse. No traceback: the input is at fault.
                raise Refused(grpc.StatusCode.INVALID_ARGUMENT,
                               f"request is not a valid {type_name}") from err

        return decode

    def _report(self, context: Any, method: str, refused: Refused) -> None:
        self.report.warning("refused a request to %s from %s: %s", method, context.peer(),
                            refused.details)

    async def _refuse(self, context: Any, method: str, refused: Refused) -> NoReturn:
        self._report(context, method, refused)
        await context.abort(refused.code, refused.details)
        raise AssertionError("abort returned")  # it raises AbortError

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        decode = self._decoder(method, handler.request_deserializer)
        serializer = handler.response_serializer

        async def decoded(raw: bytes, context: Any) -> Any:
            """The request, or the call refused (INVALID_ARGUMENT / RESOURCE_EXHAUSTED, or
            what `admit` says)."""
            try:
                if self._admit is not None:
                    self._admit(method, context)
                return decode(raw)
            except Refused as refused:
                await self._refuse(context, method, refused)

        if handler.unary_unary is not None or handler.unary_stream is not None:
            behavior = handler.unary_unary or handler.unary_stream
            if inspect.iscoroutinefunction(behavior) and handler.unary_unary is not None:
                async def unary_unary(raw: bytes, context: Any) -> Any:
                    try:
                        return await behavior(await decoded(raw, context), context)
                    except asyncio.CancelledError as cancelled:
                        await _end_if_revoked(context, cancelled)

                return grpc.unary_unary_rpc_method_handler(
                    unary_unary, request_deserializer=None, response_serializer=serializer)
            if inspect.isasyncgenfunction(behavior) and handler.unary_stream is not None:
                async def unary_stream_gen(raw: bytes, context: Any) -> AsyncIterator[Any]:
                    try:
                        async for response in behavior(await decoded(raw, context), context):
                            yield response
                    except asyncio.CancelledError as cancelled:
                        await _end_if_revoked(context, cancelled)

                return grpc.unary_stream_rpc_method_handler(
                    unary_stream_gen, request_deserializer=None, response_serializer=serializer)
            if inspect.iscoroutinefunction(behavior) and handler.unary_stream is not None:
                async def unary_stream(raw: bytes, context: Any) -> None:
                    try:
                        await behavior(await decoded(raw, context), context)
                    except asyncio.CancelledError as cancelled:
                        await _end_if_revoked(context, cancelled)

                return grpc.unary_stream_rpc_method_handler(
                    unary_stream, request_deserializer=None, response_serializer=serializer)
            return handler  # a synchronous servicer: left to gRPC

        return self._wrap_stream(method, handler, decode)

    def _wrap_stream(self, method: str, handler: grpc.RpcMethodHandler,
                     decode: Callable[[bytes], Any]) -> grpc.RpcMethodHandler:
        """Request streams. A malformed first message aborts the call before the servicer
        starts. A later one cannot abort it from inside the request iterator: the servicer may
        be writing at that moment, and gRPC refuses to send a status while a write is in flight
        (GRPC_CALL_ERROR_TOO_MANY_OPERATIONS). So the iterator ends there, as if the peer had
        half-closed, and once the servicer returns the call ends with the refusal's status."""
        behavior = handler.stream_unary or handler.stream_stream
        serializer = handler.response_serializer

        async def start(raw_requests: AsyncIterator[bytes], context: Any,
                        refusal: list[Refused]) -> AsyncIterator[Any]:
            try:
                if self._admit is not None:
                    self._admit(method, context)
            except Refused as refused:
                await self._refuse(context, method, refused)
            iterator = aiter(raw_requests)
            raw = await anext(iterator, None)
            if raw is None:
                return _empty()
            try:
                first = decode(raw)
            except Refused as refused:
                await self._refuse(context, method, refused)

            async def requests() -> AsyncIterator[Any]:
                yield first
                async for raw in iterator:
                    try:
                        message = decode(raw)
                    except Refused as refused:
                        self._report(context, method, refused)
                        refusal.append(refused)
                        return
                    yield message

            return requests()

        def finish(context: Any, refusal: list[Refused]) -> None:
            if refusal:
                context.set_code(refusal[0].code)
                context.set_details(refusal[0].details)

        if handler.stream_stream is not None:
            if inspect.iscoroutinefunction(behavior):
                async def stream_stream(raw_requests: AsyncIterator[bytes], context: Any) -> None:
                    refusal: list[Refused] = []
                    try:
                        await behavior(await start(raw_requests, context, refusal), context)
                    except asyncio.CancelledError as cancelled:
                        await _end_if_revoked(context, cancelled)
                    finish(context, refusal)

                return grpc.stream_stream_rpc_method_handler(
                    stream_stream, request_deserializer=None, response_serializer=serializer)
            if inspect.isasyncgenfunction(behavior):
                async def stream_stream_gen(raw_requests: AsyncIterator[bytes],
                                            context: Any) -> AsyncIterator[Any]:
                    refusal: list[Refused] = []
                    try:
                        requests = await start(raw_requests, context, refusal)
                        async for response in behavior(requests, context):
                            yield response
                    except asyncio.CancelledError as cancelled:
                        await _end_if_revoked(context, cancelled)
                    finish(context, refusal)

                return grpc.stream_stream_rpc_method_handler(
                    stream_stream_gen, request_deserializer=None, response_serializer=serializer)
            return handler
        if inspect.iscoroutinefunction(behavior):
            async def stream_unary(raw_requests: AsyncIterator[bytes], context: Any) -> Any:
                refusal: list[Refused] = []
                try:
                    response = await behavior(await start(raw_requests, context, refusal),
                                              context)
                except asyncio.CancelledError as cancelled:
                    await _end_if_revoked(context, cancelled)
                if refusal:
                    await context.abort(refusal[0].code, refusal[0].details)
                return response

            return grpc.stream_unary_rpc_method_handler(
                stream_unary, request_deserializer=None, response_serializer=serializer)
        return handler


async def _end_if_revoked(context: Any, cancelled: asyncio.CancelledError) -> NoReturn:
    """Ends the call with UNAUTHENTICATED when it was cancelled for a revocation; otherwise the
    cancellation goes on. (A revocation that lands while gRPC itself sends a streamed response,
    outside the handler, still ends the call's task, without a status.)"""
    if cancelled.args[:1] != (REVOKED,):
        raise cancelled
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, REVOKED)
    raise AssertionError("abort returned")  # it raises AbortError


def _denied(method: str) -> grpc.RpcMethodHandler:
    async def deny(request: Any, context: Any) -> None:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                            f"{method} is not served to callers")

    return grpc.unary_unary_rpc_method_handler(deny)


async def _empty() -> AsyncIterator[Any]:
    return
    yield  # an async generator that yields nothing
