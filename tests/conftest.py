from __future__ import annotations

import asyncio
import pathlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Generator, Iterator

import pytest

from podium.lab.etcd import EtcdCluster
from podium.rules import awaiting
from tests.helpers import IMAGE, Cluster, ensure_image
from tests.inprocess import InProcessCluster, in_process_cluster

# How long a test's agents get, after the test, to remove what it removed (`podium rm` returns
# before the containers are gone).
LEAK_GRACE_S = 20.0


def _engine_answers() -> bool:
    result = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                            capture_output=True, text=True)
    return result.returncode == 0


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keeps each phase's report on the item, for fixtures that check more after a passed test."""
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


def _passed(request: pytest.FixtureRequest) -> bool:
    reports = request.node.stash.get(_REPORTS, {})
    return "call" in reports and reports["call"].passed


# How long before pytest-timeout ends a test the watchdog prints where its event loop's tasks wait
# (pytest-timeout shows only the threads' stacks: an idle loop's, for a test whose task hangs).
WATCHDOG_LEAD_S = 10.0


def _print_tasks(signum: int, frame: object) -> None:
    loop = asyncio._get_running_loop()
    if loop is None:
        print("watchdog: no event loop runs", file=sys.stderr)
        return
    print("watchdog: the test is about to time out; its tasks wait in:", file=sys.stderr)
    for line in awaiting.every_wait(loop):
        print(f"  {line}", file=sys.stderr)


@pytest.fixture(autouse=True)
def _watchdog(request: pytest.FixtureRequest) -> Iterator[None]:
    """Shortly before pytest-timeout would end the test, prints every asyncio task's wait to the
    test's captured stderr (shown with its failure)."""
    marker = request.node.get_closest_marker("timeout")
    timeout = float(marker.args[0]) if marker and marker.args else float(
        request.config.getini("timeout") or 0)
    if timeout <= WATCHDOG_LEAD_S or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGUSR2, _print_tasks)
    main = threading.main_thread().ident
    assert main is not None
    timer = threading.Timer(timeout - WATCHDOG_LEAD_S, signal.pthread_kill, (main, signal.SIGUSR2))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR2, previous)


@pytest.fixture(scope="session")
def engine() -> None:
    """A real Docker engine with the test image. Tests that need one fail (not skip)
    without it: deploy/check.sh starts it."""
    assert _engine_answers(), "no Docker engine answers: run deploy/bootstrap.sh first"
    ensure_image()
    out = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True)
    assert out.returncode == 0, f"image {IMAGE} missing after deploy/build-image.sh"


@pytest.fixture
def cluster(engine: None, tmp_path: pathlib.Path,
            request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """A manager and agents node-a (zone=a) and node-b (zone=b) as real processes. A test must
    remove every container it caused (`podium rm`): after a passed test, containers of these
    nodes still there once the agents had LEAK_GRACE_S to act fail it. Everything is removed
    either way."""
    marker = request.node.get_closest_marker("manager_args")
    c = Cluster(tmp_path, manager_args=tuple(marker.args) if marker else ())
    left: dict[str, str] = {}
    try:
        c.start_manager()
        c.start_agent("node-a", "zone=a")
        c.start_agent("node-b", "zone=b")
        yield c
        if _passed(request):
            # Checked before close(), which removes them: checked after it, nothing could fail.
            deadline = time.monotonic() + LEAK_GRACE_S
            while (left := c.containers()) and time.monotonic() < deadline:
                time.sleep(0.2)
    finally:
        c.close()
    assert not left, f"containers left behind: {sorted(left.values())}"


@pytest.fixture
async def mini(tmp_path: pathlib.Path) -> AsyncIterator[InProcessCluster]:
    """A manager and agents node-a and node-b in this test's event loop (tests/inprocess.py)."""
    async with in_process_cluster(tmp_path, agents=2) as c:
        yield c


@pytest.fixture(scope="session")
def etcd1() -> Iterator[EtcdCluster]:
    """One etcd member for the whole run (tests that use it work under prefixes of their own;
    those that stop or kill members start a cluster of their own)."""
    with EtcdCluster(1) as cluster:
        yield cluster
