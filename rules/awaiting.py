"""Where an asyncio task waits: for the logs of a daemon whose loop would not stop when asked."""

from __future__ import annotations

import asyncio
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
