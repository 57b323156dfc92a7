"""podium.rules.notify: the sd_notify protocol on a real AF_UNIX datagram socket (a path and an
abstract name), the watchdog fed from the event loop (and not while the loop is blocked), and
what serve_until_signalled says around a daemon's life."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import pathlib
import signal
import time

import pytest

from podium.rules import daemon
from podium.rules.notify import Notifier, socket_address, watchdog_seconds
from tests.helpers import eventually, eventually_async
from tests.notifysocket import NotifySocket

pytestmark = pytest.mark.timeout(20)


@pytest.fixture(params=["path", "abstract"])
def sink(request: pytest.FixtureRequest, tmp_path: pathlib.Path):  # type: ignore[no-untyped-def]
    with NotifySocket(tmp_path / "notify" if request.param == "path" else None) as s:
        yield s


def test_ready_status_stopping_reach_the_socket(sink: NotifySocket) -> None:
    env = {**sink.env, "OTHER": "kept"}
    notifier = Notifier.from_environment(env)
    assert notifier.enabled
    assert env == {"OTHER": "kept"}  # no child process speaks for the daemon
    notifier.status("starting")
    notifier.ready("serving on 0.0.0.0:7070")
    notifier.status("serving on 0.0.0.0:7070")  # unchanged: not sent again
    notifier.status("serving on 0.0.0.0:7070;\n  2 agent session(s)")
    notifier.stopping("stopping on SIGTERM")
    notifier.close()
    eventually(lambda: len(sink.messages()) == 4, timeout=5, what="four messages")
    assert sink.messages() == [
        "STATUS=starting",
        "READY=1\nSTATUS=serving on 0.0.0.0:7070",
        "STATUS=serving on 0.0.0.0:7070; 2 agent session(s)",  # one line
        "STOPPING=1\nSTATUS=stopping on SIGTERM",
    ]


def test_without_notify_socket_nothing_happens() -> None:
    env = {"WATCHDOG_USEC": "1000000"}
    notifier = Notifier.from_environment(env)
    assert not notifier.enabled and notifier.watchdog_timeout is None
    assert notifier.send("READY=1") is False
    notifier.ready("x")  # no error, no socket
    assert env == {}


def test_malformed_values_are_named(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ValueError, match=r"NOTIFY_SOCKET='relative/path'.*absolute path.*'@'"):
        socket_address("relative/path")
    assert socket_address("@name") == b"\0name"
    with pytest.raises(ValueError, match=r"WATCHDOG_USEC='3s'.*microseconds"):
        watchdog_seconds("3s", None, own_pid=1)
    with pytest.raises(ValueError, match="WATCHDOG_PID='me'"):
        watchdog_seconds("100", "me", own_pid=1)
    with caplog.at_level(logging.WARNING):
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": "notify.sock"})
    assert not notifier.enabled
    assert "NOTIFY_SOCKET='notify.sock'" in caplog.text
    with pytest.raises(ValueError, match="one VAR=value line"):
        Notifier("@x").send("STATUS=two\nlines")


def test_watchdog_only_for_the_process_it_names(sink: NotifySocket) -> None:
    base = {**sink.env, "WATCHDOG_USEC": "30000000"}
    assert Notifier.from_environment(dict(base)).watchdog_timeout == 30.0
    mine = {**base, "WATCHDOG_PID": str(os.getpid())}
    assert Notifier.from_environment(mine).watchdog_timeout == 30.0
    other = {**base, "WATCHDOG_PID": str(os.getpid() + 1)}
    assert Notifier.from_environment(other).watchdog_timeout is None
    assert Notifier.from_environment({**base, "WATCHDOG_USEC": "0"}).watchdog_timeout is None


def test_a_send_to_nobody_is_logged_once(tmp_path: pathlib.Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier(str(tmp_path / "nobody"))
    with caplog.at_level(logging.WARNING):
        assert notifier.send("STATUS=a") is False
        assert notifier.send("STATUS=b") is False
    assert caplog.text.count("cannot notify systemd") == 1
    notifier.close()


def test_the_watchdog_stops_while_the_loop_is_blocked(sink: NotifySocket) -> None:
    """Fed every half timeout from the loop itself: a blocked loop sends nothing."""
    notifier = Notifier.from_environment({**sink.env, "WATCHDOG_USEC": "100000"})

    async def main() -> tuple[float, float]:
        async with notifier.watchdog():
            await eventually_async(lambda: len(sink.messages()) >= 3, timeout=5,
                                   what="pings")
            blocked = time.monotonic()
            time.sleep(0.5)  # noqa: ASYNC251 - the loop wedged, which the watchdog must notice
            unblocked = time.monotonic()
            await eventually_async(lambda: sink.timed()[-1][0] > unblocked, timeout=5,
                                   what="a ping once the loop runs again")
        return blocked, unblocked

    blocked, unblocked = asyncio.run(main())
    notifier.close()
    times = [at for at, text in sink.timed() if text == "WATCHDOG=1"]
    assert len(times) == len(sink.messages())
    assert not [at for at in times if blocked + 0.01 < at < unblocked - 0.01]
    before = [b - a for a, b in itertools.pairwise(times) if b < blocked]
    assert before and max(before) < 0.2  # about every 50 ms while the loop ran


class FakeDaemon:
    def __init__(self, notifier: Notifier, *, fail: bool = False) -> None:
        self.notifier = notifier
        self.fail = fail
        self.stopped = False

    async def start(self) -> None:
        self.notifier.ready("serving")

    async def serve_forever(self) -> None:
        if self.fail:
            raise RuntimeError("the store broke")
        await asyncio.Event().wait()

    async def stop(self) -> None:
        self.stopped = True


def test_serve_until_signalled_says_stopping_on_sigterm(sink: NotifySocket) -> None:
    notifier = Notifier.from_environment({**sink.env, "WATCHDOG_USEC": "200000"})
    fake = FakeDaemon(notifier)

    async def main() -> None:
        serving = asyncio.create_task(daemon.serve_until_signalled(fake, notifier))
        await eventually_async(lambda: "WATCHDOG=1" in sink.messages()[1:], timeout=5,
                               what="a ping after READY")
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(serving, 5)

    asyncio.run(main())
    notifier.close()
    assert fake.stopped
    eventually(lambda: "STOPPING=1\nSTATUS=stopping on SIGTERM" in sink.messages(), timeout=5,
               what="STOPPING=1")
    assert sink.messages()[-1] == "STOPPING=1\nSTATUS=stopping on SIGTERM"
    assert sink.assignments("READY") == ["1"]


def test_serve_until_signalled_says_why_a_daemon_stopped(sink: NotifySocket) -> None:
    notifier = Notifier.from_environment(sink.env)
    fake = FakeDaemon(notifier, fail=True)
    with pytest.raises(RuntimeError, match="the store broke"):
        asyncio.run(daemon.serve_until_signalled(fake, notifier))
    notifier.close()
    assert fake.stopped
    eventually(lambda: any(m.startswith("STOPPING=1") for m in sink.messages()), timeout=5,
               what="STOPPING=1")
    assert sink.assignments("STATUS")[-1] == "stopping: RuntimeError('the store broke')"
