"""Leadership on real etcd: one leader among candidates, a new one soon after the leader is
killed, and a leader that loses etcd steps down before its lease can expire."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import pathlib
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest

from podium.lab.etcd import EtcdCluster
from podium.manager.leadership import LeaderInfo, Leadership
from tests.helpers import eventually_async

pytestmark = pytest.mark.etcd

CANDIDATE = pathlib.Path(__file__).with_name("_candidate.py")
ROOT = CANDIDATE.parents[2]


@pytest.fixture
def etcd() -> Iterator[EtcdCluster]:
    with EtcdCluster(3) as cluster:
        yield cluster


class Candidate:
    """One _candidate.py process and the lines it printed."""

    def __init__(self, name: str, endpoints: list[str], ttl: int) -> None:
        self.name = name
        self.lines: list[list[str]] = []
        self.process = subprocess.Popen(
            [sys.executable, str(CANDIDATE), name, ",".join(endpoints), str(ttl)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.split(maxsplit=2))

    def terms(self, killed_at: float | None = None) -> list[tuple[float, float]]:
        """(elected, deposed) on the system's monotonic clock; a term still open ends now (or
        when the process was killed)."""
        spans, start = [], None
        for line in list(self.lines):
            if line[0] == "elected":
                start = float(line[1])
            elif line[0] == "deposed" and start is not None:
                spans.append((start, float(line[1])))
                start = None
        if start is not None:
            spans.append((start, killed_at if killed_at is not None else time.monotonic()))
        return spans

    @property
    def leading(self) -> bool:
        return bool(self.lines) and self.lines[-1][0] == "elected" and self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        self._reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()


def _overlaps(spans: list[tuple[str, float, float]]) -> list[str]:
    found = []
    ordered = sorted(spans, key=lambda s: s[1])
    for (a, _, a_end), (b, b_start, _) in itertools.pairwise(ordered):
        if b_start < a_end:
            found.append(f"{b} was elected {a_end - b_start:.3f} s before {a}'s term ended")
    return found


async def test_a_killed_leader_is_replaced_within_its_lease_and_a_second(
        etcd: EtcdCluster) -> None:
    ttl = 3
    candidates = [Candidate(f"m{i}", etcd.endpoints, ttl) for i in range(3)]
    killed: dict[str, float] = {}
    try:
        for _round in range(2):
            live = [c for c in candidates if c.process.poll() is None]
            leader = await eventually_async(
                lambda live=live: [c for c in live if c.leading], timeout=15,  # type: ignore[misc]
                what="a leader")
            assert len(leader) == 1, [c.name for c in leader]
            killed_at = time.monotonic()
            leader[0].process.send_signal(signal.SIGKILL)
            leader[0].process.wait(timeout=5)
            killed[leader[0].name] = killed_at
            others = [c for c in live if c is not leader[0]]
            new = await eventually_async(
                lambda others=others: [c for c in others if c.leading],  # type: ignore[misc]
                timeout=ttl + 3, what="a new leader after the kill")
            elected = float(new[0].lines[-1][1])
            # The key outlives the killed leader by at most its TTL; then a watcher wins.
            assert elected - killed_at <= ttl + 1.5
        spans = [(c.name, start, end) for c in candidates
                 for start, end in c.terms(killed.get(c.name))]
        assert not _overlaps(spans)
    finally:
        for c in candidates:
            c.stop()


async def test_a_leader_that_loses_etcd_steps_down_before_its_lease_ends(
        etcd: EtcdCluster) -> None:
    ttl = 3
    events: list[tuple[str, float]] = []
    loop = asyncio.get_running_loop()
    leadership = Leadership(
        endpoints=etcd.endpoints, me=LeaderInfo(id="solo", control="solo:7070"), ttl=ttl,
        prefix="/test",
        on_elected=lambda: events.append(("elected", loop.time())),
        on_deposed=lambda why: events.append(("deposed", loop.time())))
    task = asyncio.create_task(leadership.run())
    try:
        await eventually_async(lambda: leadership.is_leader, timeout=10, what="leadership")
        # Let a few renewals go through, then freeze every member: nothing renews from here.
        await asyncio.sleep(1.0)
        stopped_at = loop.time()
        for member in etcd.members:
            etcd.signal_member(member, signal.SIGSTOP)
        try:
            await eventually_async(lambda: events[-1][0] == "deposed", timeout=ttl + 2,
                                   what="the step down")
            deposed_at = events[-1][1]
            # The last renewal that succeeded went before the freeze; its lease lasts ttl from
            # then at least, and the leader stepped down a margin before that.
            assert deposed_at - stopped_at < ttl - leadership.margin + 0.3
            assert not leadership.may_dispatch()
        finally:
            for member in etcd.members:
                etcd.signal_member(member, signal.SIGCONT)
        # etcd back: it leads again (its old key is revoked or expires).
        await eventually_async(lambda: leadership.is_leader, timeout=ttl + 10,
                               what="leadership again")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_resigning_leader_hands_over_at_once(etcd: EtcdCluster) -> None:
    loop = asyncio.get_running_loop()
    leaders = [Leadership(endpoints=etcd.endpoints, me=LeaderInfo(id=f"m{i}", control=f"m{i}:1"),
                          prefix="/test") for i in range(2)]
    tasks = [asyncio.create_task(x.run()) for x in leaders]
    try:
        first = await eventually_async(lambda: [x for x in leaders if x.is_leader], timeout=10)
        other = next(x for x in leaders if x is not first[0])
        await eventually_async(lambda: other.leader == first[0].me, timeout=10,
                               what="the follower knowing the leader")
        started = loop.time()
        await first[0].resign()
        tasks[leaders.index(first[0])].cancel()
        await eventually_async(lambda: other.is_leader, timeout=5, what="the hand over")
        assert loop.time() - started < 1.5  # the watch, not the lease's expiry
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t


def _etcd_leader(etcd: EtcdCluster) -> str:
    """The endpoint of the etcd member that leads the etcd cluster."""
    for member in etcd.members:
        request = urllib.request.Request(f"http://{member.endpoint}/v3/maintenance/status",
                                         data=b"{}", method="POST")
        with contextlib.suppress(OSError, ValueError), \
                urllib.request.urlopen(request, timeout=2) as answer:
            status = json.load(answer)
            if status.get("leader") == status.get("header", {}).get("member_id"):
                return member.endpoint
    raise AssertionError("no etcd member says it leads")


async def test_one_frozen_etcd_member_does_not_depose_the_leader(etcd: EtcdCluster) -> None:
    loop = asyncio.get_running_loop()
    deposed: list[str] = []
    # Its calls start on the first member: freeze that one, unless it leads etcd (then etcd
    # itself needs an election, and renewals may pause beyond the margin).
    leading = await asyncio.to_thread(_etcd_leader, etcd)
    order = sorted(etcd.endpoints, key=lambda e: e == leading)
    leadership = Leadership(endpoints=order, me=LeaderInfo(id="m", control="m:1"),
                            prefix="/test", on_deposed=deposed.append)
    task = asyncio.create_task(leadership.run())
    frozen = next(m for m in etcd.members if m.endpoint == order[0])
    try:
        await eventually_async(lambda: leadership.is_leader, timeout=10, what="leadership")
        etcd.signal_member(frozen, signal.SIGSTOP)
        try:
            until = loop.time() + 2 * leadership.ttl
            while loop.time() < until:  # a window of observation, not a wait for a condition
                assert leadership.is_leader, deposed
                await asyncio.sleep(0.05)
        finally:
            etcd.signal_member(frozen, signal.SIGCONT)
        assert not deposed
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
