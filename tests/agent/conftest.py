"""Fixtures of the agent's tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator

import pytest

from tests.agent._proxykit import LOOPS, Run


@pytest.fixture(params=list(LOOPS))
def run(request: pytest.FixtureRequest) -> Iterator[Run]:
    """Runs a test's coroutine on a fresh loop of each kind, bounded to 60 s."""
    def _run(main: Callable[[], Awaitable[None]]) -> None:
        async def bounded() -> None:
            async with asyncio.timeout(60):
                await main()
        with asyncio.Runner(loop_factory=LOOPS[request.param]) as runner:
            runner.run(bounded())
    yield _run
