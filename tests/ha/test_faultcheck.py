"""The fault lab's checkers on made-up histories: what an acknowledged write allows, and terms of
two managers that overlap (podium.lab.faultcheck)."""

from __future__ import annotations

import datetime
import json
import pathlib

from podium.lab.faultcheck import ABSENT, Workload, Write, overlaps, terms


def _workload(*writes: Write) -> Workload:
    workload = Workload.__new__(Workload)
    workload.writes = list(writes)
    return workload


def test_the_last_acknowledged_write_and_later_unknown_ones_are_allowed() -> None:
    workload = _workload(
        Write("deploy", "a", 2, 0.0, acknowledged=True),
        Write("scale", "a", 4, 1.0, acknowledged=True),
        Write("scale", "a", 5, 2.0),  # timed out: may have landed
        Write("deploy", "b", 1, 3.0),  # never acknowledged
        Write("deploy", "c", 1, 4.0, acknowledged=True),
        Write("remove", "c", ABSENT, 5.0, acknowledged=True),
    )
    assert workload.expected() == {"a": {4, 5}, "b": {ABSENT, 1}, "c": {ABSENT}}


def _log(path: pathlib.Path, *events: tuple[float, str]) -> None:
    lines = []
    for at, message in events:
        when = datetime.datetime.fromtimestamp(at, tz=datetime.UTC)
        lines.append(json.dumps({"time": when.isoformat(timespec="milliseconds"),
                                 "level": "INFO", "logger": "x", "message": message}))
    path.write_text("\n".join(["not json", *lines]) + "\n")


def test_terms_end_in_the_log_at_a_kill_or_at_the_end(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "manager0.log"
    _log(log, (100.0, "leading (term 1 of this manager): loops and agent sessions started"),
         (105.0, "no longer leading (lease lost): loops stopped, agent sessions closed"),
         (110.0, "leading (term 2 of this manager): ..."),
         # killed at 112, started again, leading once more until the end
         (120.0, "leading (term 1 of this manager): ..."))
    assert terms(log, [112.0], until=130.0) == [(100.0, 105.0), (110.0, 112.0), (120.0, 130.0)]
    # Without the kill, the second term would run into the third: seen as lasting until then.
    assert terms(log, [], until=130.0)[1] == (110.0, 120.0)


def test_terms_of_two_managers_must_not_overlap() -> None:
    assert overlaps([(0, 100.0, 105.0), (1, 105.5, 110.0), (0, 110.0, 120.0)]) == []
    assert overlaps([(0, 100.0, 105.0), (1, 104.0, 110.0)]) == [
        "manager0 led 100.000-105.000 while manager1 led 104.000-110.000"]
