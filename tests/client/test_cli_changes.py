"""podium.client._commands.Changes: a CLI wait that wakes at the manager's next event, and falls
back to polling when the event stream fails. The stream is a stand-in here (no manager)."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import Any, cast

from podium.client import _api
from podium.client._api import Client
from podium.client._commands import Changes
from podium.client._wire import Call, RpcError, StatusCode
from tests.helpers import eventually


class Stream(Call):
    """A server stream: yields what is put in it; `cancel()` or `fail()` end it with an error."""

    def __init__(self) -> None:
        self.items: queue.Queue[object] = queue.Queue()
        self.cancelled = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        while True:
            item = self.items.get()
            if isinstance(item, Exception):
                raise item
            yield cast(bytes, item)

    def cancel(self) -> None:
        self.cancelled.set()
        self.items.put(Failed())

    def fail(self) -> None:
        self.items.put(Failed())


class Failed(RpcError):
    def __init__(self) -> None:
        super().__init__(StatusCode.UNAVAILABLE, "stream failed")


class FakeClient:
    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.kinds: list[str] = []

    def events(self, kinds: Any) -> _api.Stream[Any]:
        self.kinds = list(kinds)
        return _api.Stream(lambda: (self.stream, "127.0.0.1:7070"), lambda item: item)


def changes_on(stream: Stream) -> tuple[Changes, FakeClient]:
    client = FakeClient(stream)
    return Changes(cast(Client, client), ["task"]), client


def timed_wait(changes: Changes, timeout: float) -> float:
    started = time.monotonic()
    changes.wait(timeout)
    return time.monotonic() - started


def test_an_event_ends_the_wait_at_once() -> None:
    stream = Stream()
    changes, api = changes_on(stream)
    try:
        assert api.kinds == ["task"]
        assert timed_wait(changes, 0.3) >= 0.29  # nothing happened: the whole timeout
        threading.Timer(0.1, stream.items.put, ["event"]).start()
        assert timed_wait(changes, 10) < 5  # woken by the event, not the timeout
        # An event that came while nobody waited wakes the next wait at once.
        stream.items.put("event")
        eventually(changes._changed.is_set, timeout=5, interval=0.01, what="the event seen")
        assert timed_wait(changes, 10) < 1
    finally:
        changes.close()
    assert stream.cancelled.is_set()
    assert not changes._thread.is_alive()


def test_without_the_stream_it_polls() -> None:
    stream = Stream()
    changes, _ = changes_on(stream)
    try:
        stream.fail()  # e.g. a manager without WatchEvents
        changes._thread.join(timeout=5)
        assert not changes._thread.is_alive()
        assert timed_wait(changes, 10) < 1  # at most Changes.POLL, not the 10 s asked for
    finally:
        changes.close()
