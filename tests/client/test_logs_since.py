"""`podium logs --since`: a duration ago, a time or unix seconds; anything else named."""

from __future__ import annotations

import pytest

from podium.client._commands import parse_since
from podium.client.cli import CliError

NOW = 1_800_000_000.0


@pytest.mark.parametrize(("value", "expected"), [
    ("10m", NOW - 600), ("1h30m", NOW - 5400), ("500ms", NOW - 0.5),
    ("1790000000", 1_790_000_000.0), ("1790000000.25", 1_790_000_000.25),
    ("2026-12-01T10:00:00Z", 1_796_119_200.0), ("2026-12-01T10:00:00+01:00", 1_796_115_600.0),
])
def test_since_accepts_durations_times_and_unix_seconds(value: str, expected: float) -> None:
    assert parse_since(value, now=NOW) == pytest.approx(expected)


@pytest.mark.parametrize("value", ["yesterday", "-5m", "10 minutes", "2026-13-01"])
def test_since_refuses_anything_else_naming_what_is_accepted(value: str) -> None:
    with pytest.raises(CliError, match=f"--since '{value}': expected a duration ago"):
        parse_since(value, now=NOW)
