"""Test helpers: the waits (`eventually` from podium.lab.local, and `eventually_async` inside an
event loop: the one pair of polling helpers every test uses), the local cluster of real processes
(podium.lab.local) and the stacks the tests deploy."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from podium.lab.local import (
    IMAGE,
    PODIUM,
    REPO,
    Cluster,
    consistently,
    containers_of,
    docker,
    ensure_image,
    eventually,
    free_port,
)

__all__ = [
    "IMAGE",
    "PODIUM",
    "REPO",
    "WEB",
    "Cluster",
    "consistently",
    "consistently_async",
    "containers_of",
    "docker",
    "ensure_image",
    "eventually",
    "eventually_async",
    "free_port",
]

T = TypeVar("T")

# Three replicas of the test image, each publishing 80 on an engine-chosen host port.
WEB = f"""
services:
  web:
    image: {IMAGE}
    init: true
    stop_grace_period: 2s
    ports: ["80"]
    deploy:
      replicas: 3
"""


# The deadline is a parameter (ASYNC109), as in `eventually`: it bounds polling, not one call.
async def eventually_async(
    fn: Callable[[], T | Awaitable[T]], *, timeout: float = 10.0,  # noqa: ASYNC109
    interval: float = 0.01,
    what: str = "condition",
) -> T:
    """`eventually` for coroutines: polls `fn` (plain or async) on the running loop's clock
    without blocking it, until it returns a truthy value (or stops raising AssertionError)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Any = None
    while True:
        try:
            value = fn()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value  # type: ignore[return-value]
            last = value
        except AssertionError as err:
            last = err
        if loop.time() > deadline:
            raise AssertionError(f"{what} not reached within {timeout:g} s; last: {last!r}")
        await asyncio.sleep(interval)


async def consistently_async(fn: Callable[[], object], *, duration: float,
                             interval: float = 0.01, what: str = "condition") -> None:
    """`consistently` inside an event loop: `fn` must hold at every poll for `duration` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + duration
    while loop.time() < deadline:
        assert fn(), f"{what} stopped holding"
        await asyncio.sleep(interval)
