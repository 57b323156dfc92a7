"""DockerExecutor on the real engine.

Each test runs under its own node id and removes every container labelled with it at teardown
(through the docker CLI, so cleanup does not depend on the code under test). Nothing assumes an
empty engine: tests only look at containers of their own node ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest

from podium.agent._docker import DockerExecutor
from podium.agent.executor import (
    ACTION_RESYNC,
    LABEL_NODE,
    ContainerEvent,
    ExecutorError,
    LogEntry,
)
from podium.v1 import objects
from tests.helpers import IMAGE, eventually_async

pytestmark = [pytest.mark.engine, pytest.mark.usefixtures("engine")]


def _remove_node_containers(node_id: str) -> None:
    # `docker ps` can fail while a container is half-created (a test that failed mid-create
    # leaves the engine finishing it), so try a few times before giving up loudly.
    for attempt in range(5):
        listed = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label={LABEL_NODE}={node_id}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        error = listed.stderr
        ids = listed.stdout.split()
        if listed.returncode == 0 and not ids:
            return
        if ids:
            removed = subprocess.run(
                ["docker", "rm", "-f", "-v", *ids], capture_output=True, text=True, timeout=60
            )
            if listed.returncode == 0 and removed.returncode == 0:
                return
            error += removed.stderr
        time.sleep(0.2 * (attempt + 1))
    raise AssertionError(f"cannot remove the containers of {node_id}: {error}")


@pytest.fixture
def new_node_id() -> Iterator[Callable[[], str]]:
    """Makes fresh node ids; every container labelled with one of them is removed at teardown."""
    made: list[str] = []

    def make() -> str:
        made.append(f"test-{uuid.uuid4().hex[:12]}")
        return made[-1]

    yield make
    for node_id in made:
        _remove_node_containers(node_id)


@pytest.fixture
async def executor(new_node_id: Callable[[], str]) -> AsyncIterator[DockerExecutor]:
    async with DockerExecutor(node_id=new_node_id()) as ex:
        yield ex


def make_task(
    command: list[str] | None = None,
    *,
    slot: int = 1,
    init: bool = True,
    image: str = IMAGE,
    ports: list[objects.PortConfig] | None = None,
) -> objects.Task:
    # init: the busybox applets ignore SIGTERM as PID 1, so without an init stop() waits out
    # the whole grace period.
    container = objects.ContainerSpec(image=image, command=command or [], init=init)
    spec = objects.ServiceSpec(name="web", container=container, ports=ports or [])
    task_id = uuid.uuid4().hex[:12]
    return objects.Task(
        id=task_id, service_id="svc-" + task_id, service_name="web", slot=slot, spec=spec
    )


@contextlib.asynccontextmanager
async def collecting(ex: DockerExecutor) -> AsyncIterator[asyncio.Queue[ContainerEvent]]:
    """Events of `ex` in a queue, once the stream is subscribed (its first resync is consumed)."""
    queue: asyncio.Queue[ContainerEvent] = asyncio.Queue()

    async def pump() -> None:
        async for event in ex.events():
            queue.put_nowait(event)

    pumping = asyncio.create_task(pump())
    try:
        first = await asyncio.wait_for(queue.get(), 10)
        assert first.action == ACTION_RESYNC
        yield queue
    finally:
        pumping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pumping


async def next_event(queue: asyncio.Queue[ContainerEvent], task_id: str) -> ContainerEvent:
    async with asyncio.timeout(10):
        while True:
            event = await queue.get()
            if event.task_id == task_id:
                return event


async def test_info_reports_version_and_capacity(executor: DockerExecutor) -> None:
    info = await executor.info()
    assert info.version
    assert info.nano_cpus >= 1_000_000_000
    assert info.memory_bytes > 0


async def test_created_and_started_container_is_listed_and_running(
    executor: DockerExecutor,
) -> None:
    task = make_task(["sleep", "300"])
    first, second = await asyncio.gather(executor.create(task), executor.create(task))
    assert first == second
    await executor.start(first)
    await executor.start(first)  # already running: no error
    assert await executor.create(task) == first

    state = await executor.inspect(first)
    assert state is not None
    assert (state.task_id, state.name, state.running) == (task.id, f"web.1.{task.id}", True)
    assert state.exit_code is None and state.started_at is not None
    listed = await executor.list_containers()
    assert [(s.container_id, s.running) for s in listed] == [(first, True)]


async def test_events_report_start_then_die_with_exit_code(executor: DockerExecutor) -> None:
    task = make_task(["sh", "-c", "exit 1"])
    async with collecting(executor) as events:
        container_id = await executor.create(task)
        await executor.start(container_id)
        actions: list[ContainerEvent] = []
        while not actions or actions[-1].action != "die":
            actions.append(await next_event(events, task.id))
    assert [e.action for e in actions] == ["create", "start", "die"]
    assert all(e.container_id == container_id for e in actions)
    assert actions[-1].exit_code == 1
    assert actions[1].time_ns <= actions[2].time_ns

    state = await executor.inspect(container_id)
    assert state is not None
    assert (state.running, state.exit_code, state.finished_at is not None) == (False, 1, True)


async def test_missing_image_is_reported_not_pulled(executor: DockerExecutor) -> None:
    with pytest.raises(ExecutorError, match="No such image") as caught:
        await executor.create(make_task(image="podium-nosuch/image:latest"))
    assert str(caught.value) == "No such image: podium-nosuch/image:latest"
    assert not caught.value.permanent


async def test_invalid_command_fails_start_permanently(executor: DockerExecutor) -> None:
    container_id = await executor.create(make_task(["/no/such/binary"], init=False))
    with pytest.raises(ExecutorError, match="no/such/binary") as caught:
        await executor.start(container_id)
    assert caught.value.permanent
    state = await executor.inspect(container_id)
    assert state is not None and state.exit_code is not None and state.error


async def test_stop_and_remove_are_idempotent(executor: DockerExecutor) -> None:
    container_id = await executor.create(make_task(["sleep", "300"]))
    await executor.start(container_id)
    await executor.stop(container_id, grace=5)
    state = await executor.inspect(container_id)
    assert state is not None and not state.running
    await executor.stop(container_id, grace=5)  # already stopped
    await executor.remove(container_id)
    await executor.remove(container_id)  # gone
    await executor.stop(container_id, grace=5)  # gone
    assert await executor.inspect(container_id) is None
    assert await executor.list_containers() == []


async def test_engine_chosen_published_port_serves_http(executor: DockerExecutor) -> None:
    port = objects.PortConfig(target_port=80, published_port=0, host_ip="127.0.0.1")
    container_id = await executor.create(make_task(ports=[port]))  # the image's httpd
    await executor.start(container_id)
    state = await executor.inspect(container_id)
    assert state is not None
    [binding] = state.ports
    assert (binding.target_port, binding.host_ip) == (80, "127.0.0.1")
    assert binding.protocol == objects.PortConfig.PROTOCOL_TCP
    assert binding.published_port > 0

    body = ""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:

        async def answers() -> bool:
            nonlocal body
            try:
                async with http.get(f"http://127.0.0.1:{binding.published_port}/") as response:
                    body = await response.text()
                    return response.status == 200
            except (aiohttp.ClientError, TimeoutError):
                return False  # httpd not listening yet

        await eventually_async(answers, what="the published port answers")
    assert body.strip() == f"hello from {container_id[:12]}"


async def test_executors_of_different_nodes_do_not_see_each_others_containers(
    new_node_id: Callable[[], str],
) -> None:
    async with (
        DockerExecutor(node_id=new_node_id()) as a,
        DockerExecutor(node_id=new_node_id()) as b,
        collecting(b) as b_events,
    ):
        task_a, task_b = make_task(["sleep", "300"]), make_task(["sleep", "300"])
        a_id = await a.create(task_a)
        await a.start(a_id)
        b_id = await b.create(task_b)
        # Events arrive in order: had b seen a's container, a's create would come first.
        first = await asyncio.wait_for(b_events.get(), 10)
        assert (first.action, first.container_id) == ("create", b_id)
        assert [s.container_id for s in await a.list_containers()] == [a_id]
        assert [s.container_id for s in await b.list_containers()] == [b_id]


async def test_event_stream_reconnects_with_a_resync_and_ends_on_close(
    new_node_id: Callable[[], str],
) -> None:
    ex = DockerExecutor(node_id=new_node_id())
    events = ex.events()
    try:
        first = await asyncio.wait_for(anext(events), 10)
        assert first.action == ACTION_RESYNC
        # Drop the connection under the iterator, as an engine restart would.
        for response in list(ex._streams):
            response.close()
        # Made while the stream is down: found by the re-list the resync asks for.
        during_gap = make_task(["sleep", "300"])
        await ex.create(during_gap)
        again = await asyncio.wait_for(anext(events), 10)
        assert again.action == ACTION_RESYNC
        assert [s.task_id for s in await ex.list_containers()] == [during_gap.id]
        after = make_task(["sleep", "300"])
        await ex.create(after)
        # The event of the container made in the gap may be replayed first.
        async with asyncio.timeout(10):
            while (event := await anext(events)).task_id != after.id:
                assert event.task_id == during_gap.id
        assert event.action == "create"
    finally:
        await ex.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(events), 5)
    await ex.close()  # idempotent
    with pytest.raises(ExecutorError):
        await ex.list_containers()


async def docker_cli(*args: str) -> str:
    """The docker CLI's stdout (the check does not go through the code under test)."""
    proc = await asyncio.create_subprocess_exec(
        "docker", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def exited(executor: DockerExecutor, container_id: str) -> int:
    async def code() -> int | None:
        state = await executor.inspect(container_id)
        assert state is not None
        return None if state.exit_code is None else state.exit_code + 1  # truthy for 0 too

    return await eventually_async(code, timeout=30, interval=0.1, what="container exit") - 1


async def test_compose_options_take_effect_in_the_container(executor: DockerExecutor) -> None:
    task = make_task(
        ["sh", "-c", "id -u; id -g; pwd; hostname; ulimit -n; grep -c 'db.example' /etc/hosts;"
         " touch /probe 2>/dev/null && echo writable || echo read-only"]
    )
    options = task.spec.container
    options.user = "1234:5678"
    options.working_dir = "/usr"
    options.hostname = "opts-host"
    options.read_only = True
    options.extra_hosts.append("db.example:10.1.2.3")
    options.ulimits.add(name="nofile", soft=4321, hard=8642)
    options.stop_signal = "SIGUSR1"
    container_id = await executor.create(task)
    await executor.start(container_id)
    assert await exited(executor, container_id) == 0
    logs = await docker_cli("logs", container_id)
    assert logs.split() == ["1234", "5678", "/usr", "opts-host", "4321", "1", "read-only"]
    inspected = await docker_cli(
        "inspect", "-f", "{{.Config.StopSignal}} {{.HostConfig.ReadonlyRootfs}}", container_id
    )
    assert inspected.split() == ["SIGUSR1", "true"]


async def test_stop_sends_the_stop_signal_and_still_kills_after_the_grace(
    executor: DockerExecutor,
) -> None:
    # Handled: the container exits on the stop signal, long before the grace is over.
    handled = make_task(
        ["sh", "-c", "trap 'exit 7' USR1; echo ready; while :; do sleep 0.1; done"]
    )
    handled.spec.container.stop_signal = "SIGUSR1"
    # Ignored: the grace still bounds the stop, as without a stop signal.
    ignored = make_task(
        ["sh", "-c", "trap '' USR1 TERM; echo ready; while :; do sleep 0.1; done"], slot=2
    )
    ignored.spec.container.stop_signal = "SIGUSR1"
    ids = [await executor.create(t) for t in (handled, ignored)]
    for container_id in ids:
        await executor.start(container_id)

    async def ready() -> bool:  # the shells have installed their traps
        return all(["ready" in await docker_cli("logs", c) for c in ids])

    await eventually_async(ready, timeout=30, interval=0.1, what="traps installed")

    started = time.monotonic()
    await executor.stop(ids[0], grace=30)
    assert time.monotonic() - started < 15
    assert await exited(executor, ids[0]) == 7

    started = time.monotonic()
    await executor.stop(ids[1], grace=2)
    # The task's grace, not the engine's default of 10 s.
    assert 1.5 <= time.monotonic() - started < 9
    assert await exited(executor, ids[1]) == 137  # SIGKILL after the grace


async def test_invalid_option_fails_create_permanently(executor: DockerExecutor) -> None:
    task = make_task()
    task.spec.container.expose.append("http")
    with pytest.raises(ExecutorError, match="expose: 'http'") as caught:
        await executor.create(task)
    assert caught.value.permanent
    assert await executor.list_containers() == []


async def test_engine_tuning_options_take_effect_in_the_container(
    executor: DockerExecutor,
) -> None:
    task = make_task(
        ["sh", "-c", "ls /dev/tuned-null; cat /proc/sys/kernel/domainname"
         " /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/cpuset/cpuset.cpus"
         " /proc/self/oom_score_adj"]
    )
    options = task.spec.container
    options.devices.append("/dev/null:/dev/tuned-null:rw")
    options.domainname = "tuned.example"
    options.cpu_shares = 512
    options.cpuset_cpus = "0"
    # Positive: lowering it needs CAP_SYS_RESOURCE, which this machine's engine lacks.
    options.oom_score_adj = 500
    options.ipc_mode = "shareable"
    options.runtime = "runc"
    container_id = await executor.create(task)
    await executor.start(container_id)
    assert await exited(executor, container_id) == 0
    logs = await docker_cli("logs", container_id)
    assert logs.split() == ["/dev/tuned-null", "tuned.example", "512", "0", "500"]
    inspected = await docker_cli(
        "inspect", "-f", "{{.HostConfig.IpcMode}} {{.HostConfig.Runtime}}", container_id
    )
    assert inspected.split() == ["shareable", "runc"]


async def _read_logs(executor: DockerExecutor, container_id: str,
                     **options: Any) -> list[LogEntry]:
    async with asyncio.timeout(20):
        return [entry async for entry in executor.logs(container_id, **options)]


async def test_logs_keep_each_line_s_stream_and_time_and_follow_until_the_container_stops(
        executor: DockerExecutor) -> None:
    task = make_task(["sh", "-c", "echo one; echo two >&2; printf 'bin\\377ary\\n'; sleep 1; "
                      "echo three"])
    container_id = await executor.create(task)
    started = time.time_ns()
    await executor.start(container_id)
    # Following from the start: every line, then the stream ends with the container.
    followed = await _read_logs(executor, container_id, follow=True)
    # Each stream in its order (the engine reads stdout and stderr from two pipes: between
    # them, the order is the engine's).
    # Bytes pass as the engine keeps them: its json-file log driver stores invalid UTF-8 as
    # U+FFFD.
    binary = "bin\ufffdary".encode()
    assert [e.text for e in followed if not e.stderr] == [b"one", binary, b"three"]
    assert [e.text for e in followed if e.stderr] == [b"two"]
    assert all(started - 2 * 10**9 < e.time_ns < time.time_ns() for e in followed)
    assert [e.text for e in await _read_logs(executor, container_id, follow=False, tail=1)] \
        == [b"three"]
    at = max(e.time_ns for e in followed if e.text != b"three")  # a second before "three"
    after = await _read_logs(executor, container_id, follow=False, since_ns=at + 1)
    assert [e.text for e in after] == [b"three"]


async def test_logs_of_a_tty_container_and_of_none(executor: DockerExecutor) -> None:
    task = make_task(["sh", "-c", "echo on a terminal; echo also >&2"])
    task.spec.container.tty = True
    container_id = await executor.create(task)
    await executor.start(container_id)
    entries = await _read_logs(executor, container_id, follow=True)
    assert [(e.text, e.stderr) for e in entries] == [(b"on a terminal", False),
                                                     (b"also", False)]
    with pytest.raises(ExecutorError, match="No such container"):
        await _read_logs(executor, "0" * 64, follow=False)
