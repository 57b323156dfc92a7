"""Control.Logs: the container output of a service's tasks (or of one task), from the agents.

The manager keeps no output: it asks each node that holds a task of the service over the node's
session (Dispatcher.open_logs) and merges what comes back, each chunk of lines tagged with its
task, in the order each task wrote them (tasks interleave as their chunks arrive, as `docker
service logs` does). Which tasks: every task that got a container, so the output of a replica
that crashed or was replaced can still be read while its container exists; for a service, a
finished task whose container is gone is left out silently, while a live task whose output cannot
be read (its node is down, the engine failed) is answered with the reason.

With `follow` the call stays open: it watches the store for tasks of the service that get a
container meanwhile (a scale-up, a replacement, a rolling update) and follows them too, until the
caller cancels. A task's own follow ends when its container stops.

A caller that reads more slowly than the output comes is cut off (dispatcher.LOG_BACKLOG) with
the reason, rather than holding the manager's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from podium.manager.dispatcher import LogStream
from podium.manager.store import ReadTx, Store, WatchOverflowError
from podium.rules.taskstate import is_live
from podium.v1 import control, objects

# Responses waiting for the caller's stream before the streams feeding them stop reading.
OUT_BACKLOG = 64
# Task changes a following call may fall behind before it stops following.
WATCH_LIMIT = 20_000


class LogSource(Protocol):
    def open_logs(self, node_id: str, task_ids: list[str], *, follow: bool, since_ns: int = 0,
                  tail: int = 0) -> LogStream | None: ...

    def close_logs(self, stream: LogStream) -> None: ...


@dataclass(slots=True, frozen=True)
class Selection:
    """What a Logs request reads: a service's tasks (service_id set) or one task."""

    service_id: str
    tasks: list[objects.Task]


def has_container(task: objects.Task) -> bool:
    return bool(task.node_id and task.status.container_id)


def task_name(task: objects.Task) -> str:
    return f"{task.service_name}.{task.slot or task.node_id}"


def select(view: ReadTx, service: objects.Service | None, task: objects.Task | None) -> Selection:
    if service is not None:
        tasks = [t for t in view.tasks_of_service(service.id) if has_container(t)]
        tasks.sort(key=lambda t: (t.slot, t.node_id, t.meta.created.ToNanoseconds()))
        return Selection(service.id, tasks)
    assert task is not None
    return Selection("", [task] if has_container(task) else [])


async def stream(store: Store, source: LogSource, selection: Selection,
                 request: control.LogsRequest) -> AsyncIterator[control.LogsResponse]:
    """The responses for a request whose tasks were selected (select())."""
    since_ns = request.since.ToNanoseconds() if request.HasField("since") else 0
    out: asyncio.Queue[control.LogsResponse | None] = asyncio.Queue(OUT_BACKLOG)
    tasks: dict[str, objects.Task] = {}
    streams: list[LogStream] = []
    pumps: set[asyncio.Task[None]] = set()
    for_service = bool(selection.service_id)

    def tell(task: objects.Task, error: str) -> control.LogsResponse:
        return control.LogsResponse(task_id=task.id, task_name=task_name(task),
                                    node_id=task.node_id, error=error)

    async def pump(log_stream: LogStream) -> None:
        left = len(log_stream.task_ids)
        while left:
            chunk = await log_stream.chunks.get()
            task = tasks[chunk.task_id]
            left -= chunk.end
            error = chunk.error
            if error and for_service and not is_live(store.view().get_task(task.id) or task):
                error = ""  # a replica that is gone: its output went with its container
            if chunk.lines or error:
                response = tell(task, error)
                response.lines.extend(chunk.lines)
                await out.put(response)

    async def read(new: list[objects.Task]) -> None:
        by_node: dict[str, list[objects.Task]] = {}
        for task in new:
            tasks[task.id] = task
            by_node.setdefault(task.node_id, []).append(task)
        for node_id, group in sorted(by_node.items()):
            opened = source.open_logs(node_id, [t.id for t in group], follow=request.follow,
                                      since_ns=since_ns, tail=request.tail)
            if opened is None:
                node = store.view().get_node(node_id)
                name = node.description.name if node is not None else node_id
                for task in group:
                    if not for_service or is_live(task):
                        await out.put(tell(task, f"node {name} is not connected: its output "
                                                 "cannot be read now"))
                continue
            streams.append(opened)
            job = asyncio.create_task(pump(opened), name=f"logs of {node_id}")
            pumps.add(job)
            job.add_done_callback(pumps.discard)

    async def watch_new() -> None:
        watch = store.watch(limit=WATCH_LIMIT)
        try:
            # Tasks that got a container between the selection and this watch.
            await read([t for t in select(store.view(), store.view().get_service(
                selection.service_id), None).tasks if t.id not in tasks])
            while True:
                try:
                    change = await watch.get()
                except WatchOverflowError:
                    await out.put(control.LogsResponse(
                        error="fell behind the cluster's changes: new tasks are no longer "
                              "followed; run the command again"))
                    return
                obj = change.obj
                if (change.kind == "task" and change.action != "delete"
                        and isinstance(obj, objects.Task)
                        and obj.service_id == selection.service_id
                        and obj.id not in tasks and has_container(obj)):
                    await read([obj])
        finally:
            watch.close()

    async def run() -> None:
        await read(selection.tasks)
        if request.follow and for_service:
            await watch_new()  # until cancelled
        while pumps:
            await asyncio.wait(set(pumps))
        await out.put(None)

    runner = asyncio.create_task(run(), name="logs")
    try:
        while (response := await out.get()) is not None:
            yield response
        await runner  # its errors, if any
    finally:
        runner.cancel()
        for job in (runner, *pumps):
            job.cancel()
        for job in (runner, *list(pumps)):
            with contextlib.suppress(asyncio.CancelledError):
                await job
        for log_stream in streams:
            source.close_logs(log_stream)
