"""The daemons' own log lines: readable text by default, one JSON object per line with
--log-format json (time, level, logger, message, exception), on a real manager process."""

from __future__ import annotations

import datetime
import json
import logging
import pathlib
import signal
import subprocess
import sys

import pytest

from podium.rules.daemon import JsonFormatter
from tests.helpers import PODIUM, eventually

pytestmark = pytest.mark.timeout(60)


def record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise KeyError("node-a")
        except KeyError:
            exc_info = sys.exc_info()
    return logging.LogRecord("podium.manager.scheduler", logging.ERROR, __file__, 1, message,
                             args, exc_info)


def test_json_events_carry_time_level_logger_message_and_exception() -> None:
    line = JsonFormatter().format(record("placed %d tasks on %s\nsecond line", 3, "node-a"))
    assert "\n" not in line
    event = json.loads(line)
    assert set(event) == {"time", "level", "logger", "message"}
    assert event["level"] == "ERROR" and event["logger"] == "podium.manager.scheduler"
    assert event["message"] == "placed 3 tasks on node-a\nsecond line"
    at = datetime.datetime.fromisoformat(event["time"])
    assert event["time"].endswith("Z") and at.tzinfo is not None
    assert abs((datetime.datetime.now(datetime.UTC) - at).total_seconds()) < 60

    event = json.loads(JsonFormatter().format(record("lost", exc=True)))
    assert event["exception"].startswith("Traceback (most recent call last):")
    assert event["exception"].endswith("KeyError: 'node-a'")


def run_managers(tmp_path: pathlib.Path, *flag_sets: tuple[str, ...]) -> list[list[str]]:
    """Starts one manager per set of flags (at once), waits for each to serve, stops them with
    SIGTERM: the stderr lines of each."""
    logs, procs = [], []
    try:
        for i, flags in enumerate(flag_sets):
            logs.append(log := tmp_path / f"manager-{i}.log")
            with log.open("w") as out:
                procs.append(subprocess.Popen(
                    [*PODIUM, "manager", "--listen", "127.0.0.1:0", "--data-dir",
                     str(tmp_path / f"m{i}"), "--admin-credentials", "none",
                     "--metrics-listen", "off", *flags],
                    stdout=subprocess.DEVNULL, stderr=out))
        for log in logs:
            eventually(lambda log=log: "agents join on" in log.read_text(),
                       timeout=30, what="the manager serving")
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        assert [proc.wait(timeout=20) for proc in procs] == [0] * len(procs)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return [log.read_text().splitlines() for log in logs]


def test_a_manager_logs_text_by_default_and_json_on_request(tmp_path: pathlib.Path) -> None:
    text, lines = run_managers(tmp_path, (), ("--log-format", "json"))
    assert any(" INFO podium.manager.manager: manager listening on 127.0.0.1:0" in line
               for line in text), text
    events = [json.loads(line) for line in lines]  # every line is one event
    assert {"time", "level", "logger", "message"} <= set(events[0])
    listening = next(e for e in events if e["message"].startswith("manager listening"))
    assert listening == {**listening, "logger": "podium.manager.manager", "level": "INFO",
                         "message": f"manager listening on 127.0.0.1:0 (data in {tmp_path}/m1)"}


def test_an_unknown_log_format_is_refused_with_the_choices() -> None:
    done = subprocess.run([*PODIUM, "agent", "--join", "127.0.0.1:1", "--name", "a",
                           "--data-dir", "/nonexistent", "--log-format", "xml"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2
    assert "--log-format: invalid choice: 'xml' (choose from 'text', 'json')" in done.stderr
