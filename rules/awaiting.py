"""Where an asyncio task waits, and a bounded wait for cancelled tasks: for the logs of a daemon
whose loop would not stop when asked."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import Any


def where(task: asyncio.Task[Any], depth: int = 20) -> str:
    """The chain of calls `task` waits in, outermost first, then what the innermost one awaits
    (Task.get_stack shows only one frame of a suspended coroutine)."""
    calls: list[str] = []
    awaited: Any = task.get_coro()
    while awaited is not None and len(calls) < depth:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None)
        if frame is None:
            calls.append(repr(awaited)[:200])  # a future, a C-level awaitable
            break
        name = frame.f_code.co_filename.rsplit("/", 1)[-1]
        calls.append(f"{name}:{frame.f_code.co_name}:{frame.f_lineno}")
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None)
    return " -> ".join(calls)


def every_wait(loop: asyncio.AbstractEventLoop | None = None) -> list[str]:
    """Each task of `loop` (the running one by default) and where it waits, a line each."""
    return [f"{task.get_name()}: {where(task)}" for task in asyncio.all_tasks(loop)]


async def ended(tasks: Collection[asyncio.Task[Any]], wait: float, log: logging.Logger,
                owner: str) -> None:
    """Waits up to `wait` seconds for cancelled `tasks` to end. One that does not is logged with
    where it waits and left behind, so that stopping is bounded (systemd would kill the daemon
    otherwise); a failure one ended with (not its cancellation) is raised."""
    if not tasks:
        return
    done, stuck = await asyncio.wait(tasks, timeout=wait)
    for task in stuck:
        log.error("the %s's %s did not end within %g s of being cancelled; left behind. It "
                  "waits in %s", owner, task.get_name(), wait, where(task))
    for task in done:
        if not task.cancelled():
            task.result()
