"""RateLimitedLog, the manager's one line per interval for refused requests (pure, a fake clock)."""

from __future__ import annotations

import logging

import pytest

from podium.manager.requestguard import RateLimitedLog


def test_one_line_per_interval_with_the_count_suppressed(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    limited = RateLimitedLog(logging.getLogger("t"), interval=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="t"):
        for i in range(1000):
            now[0] = 100.0 + i * 0.005  # 1,000 in 5 s
            limited.warning("refused %s", i)
        now[0] = 111.0
        limited.warning("refused %s", "late")
        limited.warning("refused %s", "later")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["refused 0", "refused late (999 more like it in the last 10 s not logged)"]
    assert limited.suppressed == 1
