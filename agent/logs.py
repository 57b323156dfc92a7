"""Container output for the manager: the agent's side of `podium logs`.

The manager asks over the session (LogRequest: tasks of this node, follow or not, since, tail)
and this module answers with LogChunks on the same session, one stream per task: each task's
lines in order, batched (a chunk holds what piled up while the previous one was sent, at most
CHUNK_LINES lines or CHUNK_BYTES), and a last chunk with `end` (and `error` when the output
could not be read: no container for the task, an engine error).

Output never crowds out what the session is for: chunks are sent only while the session's
outbox has room (`send` waits), so a task printing faster than the manager reads holds its own
engine stream instead of filling the outbox. A LogCancel, or the session's end, stops the
request's streams. At most MAX_STREAMS streams run at once; a request beyond that is answered
with an error at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from podium.agent.executor import Executor, ExecutorError, LogEntry
from podium.v1 import dispatcher

log = logging.getLogger(__name__)

CHUNK_LINES = 500
CHUNK_BYTES = 64 << 10
# Lines read from the engine and not yet sent, per stream.
PENDING_LINES = 2 * CHUNK_LINES
MAX_STREAMS = 256

Send = Callable[[dispatcher.AgentMessage], Awaitable[None]]


class LogService:
    def __init__(self, executor: Executor) -> None:
        self._executor = executor
        self._streams: dict[int, list[asyncio.Task[None]]] = {}  # request id -> its streams

    @property
    def streams(self) -> int:
        return sum(len(jobs) for jobs in self._streams.values())

    def handle(self, message: dispatcher.ManagerMessage, send: Send) -> None:
        """A LogRequest or LogCancel from the manager; `send` puts a message on the session
        that carried it (waiting for room)."""
        if message.HasField("logs_cancel"):
            self._cancel(message.logs_cancel.request_id)
        elif message.HasField("logs"):
            request = dispatcher.LogRequest()
            request.CopyFrom(message.logs)
            job = asyncio.create_task(self._serve(request, send),
                                      name=f"logs {request.request_id}")
            self._streams.setdefault(request.request_id, []).append(job)
            job.add_done_callback(lambda _: self._forget(request.request_id, job))

    def stop_all(self) -> None:
        """The session ended: nothing more can reach the manager on it."""
        for request_id in list(self._streams):
            self._cancel(request_id)

    async def close(self) -> None:
        jobs = [job for group in self._streams.values() for job in group]
        self.stop_all()
        for job in jobs:
            with contextlib.suppress(asyncio.CancelledError):
                await job

    def _cancel(self, request_id: int) -> None:
        for job in self._streams.get(request_id, []):
            job.cancel()

    def _forget(self, request_id: int, job: asyncio.Task[None]) -> None:
        group = self._streams.get(request_id)
        if group is not None and job in group:
            group.remove(job)
            if not group:
                del self._streams[request_id]

    async def _serve(self, request: dispatcher.LogRequest, send: Send) -> None:
        """One request: its tasks' streams side by side."""
        def chunk(task_id: str, *, error: str = "") -> dispatcher.AgentMessage:
            return dispatcher.AgentMessage(logs=dispatcher.LogChunk(
                request_id=request.request_id, task_id=task_id, end=True, error=error))

        if self.streams + len(request.task_ids) > MAX_STREAMS:
            for task_id in request.task_ids:
                await send(chunk(task_id, error=f"this node serves at most {MAX_STREAMS} log "
                                                "streams at once: try again later"))
            return
        try:
            containers = {c.task_id: c.container_id
                          for c in await self._executor.list_containers()}
        except ExecutorError as err:
            for task_id in request.task_ids:
                await send(chunk(task_id, error=str(err)))
            return
        since_ns = request.since.ToNanoseconds() if request.HasField("since") else 0
        streams = []
        for task_id in request.task_ids:
            container_id = containers.get(task_id)
            if container_id is None:
                await send(chunk(task_id, error="no container (removed, or never created)"))
                continue
            streams.append(self._stream(request, task_id, container_id, since_ns, send))
        await asyncio.gather(*streams)

    async def _stream(self, request: dispatcher.LogRequest, task_id: str, container_id: str,
                      since_ns: int, send: Send) -> None:
        pending: asyncio.Queue[LogEntry | None] = asyncio.Queue(PENDING_LINES)
        error = ""

        async def read() -> None:
            nonlocal error
            try:
                async for entry in self._executor.logs(container_id, follow=request.follow,
                                                       since_ns=since_ns, tail=request.tail):
                    await pending.put(entry)
            except ExecutorError as err:
                error = str(err)
            except Exception as err:
                log.exception("task %s: reading its output failed", task_id)
                error = f"reading the output failed: {err}"
            await pending.put(None)  # not when cancelled: nobody reads any more

        reader = asyncio.create_task(read(), name=f"read logs {task_id}")
        try:
            done = False
            while not done:
                entry = await pending.get()
                message = dispatcher.AgentMessage(
                    logs=dispatcher.LogChunk(request_id=request.request_id, task_id=task_id))
                size = 0
                while True:
                    if entry is None:
                        done = True
                        message.logs.end = True
                        message.logs.error = error
                        break
                    line = message.logs.lines.add(text=entry.text)
                    line.timestamp.FromNanoseconds(entry.time_ns)
                    if entry.stderr:
                        line.stream = dispatcher.LogLine.STREAM_STDERR
                    size += len(entry.text)
                    if len(message.logs.lines) >= CHUNK_LINES or size >= CHUNK_BYTES:
                        break
                    try:
                        entry = pending.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                await send(message)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
