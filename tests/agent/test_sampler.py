"""LoadSampler: the arithmetic on fake /proc and cgroup trees, then real containers on the engine.

Engine tests label every container they start with a value unique to the test and remove all
containers carrying it at teardown, through the docker CLI.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from podium.agent.sampler import LoadSampler, TaskSample
from tests.helpers import IMAGE, docker, eventually

LABEL = "io.podium.test.load"
UNLIMITED = "9223372036854771712"


# ---------------------------------------------------------------------------------------------
# Fake trees (no engine)
# ---------------------------------------------------------------------------------------------


def _write(path: pathlib.Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _proc_stat(user: int, idle: int) -> str:
    # Two cpus; the host line is their sum. iowait (5th) counts as idle.
    half_u, half_i = user // 2, idle // 2
    return (f"cpu  {user} 0 0 {idle - 10} 10 0 0 0 0 0\n"
            f"cpu0 {half_u} 0 0 {half_i - 5} 5 0 0 0 0 0\n"
            f"cpu1 {user - half_u} 0 0 {idle - half_i - 5} 5 0 0 0 0 0\n"
            "intr 12345 0 0\nctxt 999\n")


def _fake_v1(tmp: pathlib.Path) -> tuple[LoadSampler, pathlib.Path, pathlib.Path]:
    """A hybrid v1 host: cpu,cpuacct mounted at its root, memory bind-mounted from a sub-cgroup
    (mount root /podium-host-a), an empty cgroup2 at unified/. Returns the sampler and the
    container's cpuacct and memory directories."""
    proc, cg = tmp / "proc", tmp / "cgroup"
    _write(proc / "self" / "mountinfo", "\n".join([
        f"31 23 0:28 / {cg} rw,relatime - tmpfs tmpfs rw,mode=755",
        f"32 31 0:29 / {cg}/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct",
        f"35 31 0:32 /podium-host-a {cg}/memory rw,relatime - cgroup cgroup rw,memory",
        f"41 31 0:38 / {cg}/unified rw,relatime - cgroup2 cgroup2 rw",
        "50 23 0:40 / /elsewhere rw - cgroup cgroup rw,pids",
        "",
    ]))
    _write(proc / "42" / "cgroup", "\n".join([
        "5:pids:/podium-host-a/abc",
        "4:memory:/podium-host-a/abc",
        "2:cpu,cpuacct:/podium-host-a/abc",
        "1:name=systemd:/podium-host-a/abc",
        "0::/podium-host-a/abc",
        "",
    ]))
    _write(proc / "stat", _proc_stat(user=1000, idle=9000))
    _write(proc / "meminfo", "MemTotal:       1000 kB\nMemFree:         100 kB\n"
                             "MemAvailable:    600 kB\nBuffers:          10 kB\n")
    cpu = cg / "cpu,cpuacct" / "podium-host-a" / "abc"
    memory = cg / "memory" / "abc"
    _write(cpu / "cpuacct.usage", "1000000000\n")
    _write(memory / "memory.usage_in_bytes", "50000000\n")
    _write(memory / "memory.limit_in_bytes", UNLIMITED + "\n")
    _write(memory / "memory.stat", "cache 9\nrss 1\ninactive_file 7\ntotal_cache 30000000\n"
                                   "total_rss 20000000\ntotal_inactive_file 10000000\n")
    return LoadSampler(proc_root=str(proc), cgroup_root=str(cg)), cpu, memory


def test_v1_cpu_is_the_usage_delta_over_wall_time_and_memory_excludes_inactive_file(
    tmp_path: pathlib.Path,
) -> None:
    sampler, cpu, memory = _fake_v1(tmp_path)
    sampler.track("t1", 42)
    node, tasks = sampler.sample(now=10.0)
    assert tasks == [TaskSample("t1", 0.0, 40_000_000, 0)]  # first sample: no cpu yet
    assert (node.cpu_cores_used, node.cpu_cores_total) == (0.0, 2.0)
    assert (node.memory_used_bytes, node.memory_total_bytes) == (400 * 1024, 1000 * 1024)

    _write(cpu / "cpuacct.usage", "2500000000\n")  # 1.5 s of cpu in 2 s
    _write(memory / "memory.limit_in_bytes", "67108864\n")
    _write(tmp_path / "proc" / "stat", _proc_stat(user=1150, idle=9050))  # 150 busy of 200
    sampler.track("t1", 42)  # same pid: keeps the baseline
    node, tasks = sampler.sample(now=12.0)
    assert tasks == [TaskSample("t1", 0.75, 40_000_000, 64 << 20)]
    assert node.cpu_cores_used == pytest.approx(1.5)

    # The counter went backwards (the cgroup was recreated): no negative load.
    _write(cpu / "cpuacct.usage", "100\n")
    assert sampler.sample(now=13.0)[1][0].cpu_cores == 0.0


def test_new_pid_restarts_the_baseline_and_a_vanished_container_is_forgotten(
    tmp_path: pathlib.Path,
) -> None:
    sampler, cpu, memory = _fake_v1(tmp_path)
    sampler.track("t1", 42)
    sampler.sample(now=1.0)
    (tmp_path / "proc" / "43").mkdir()
    (tmp_path / "proc" / "43" / "cgroup").write_text((tmp_path / "proc/42/cgroup").read_text())
    sampler.track("t1", 43)  # restarted
    _write(cpu / "cpuacct.usage", "9000000000\n")
    assert sampler.sample(now=2.0)[1][0].cpu_cores == 0.0

    sampler.track("gone", 4242)  # no such pid: ignored
    assert sampler.tracked() == ["t1"]
    (memory / "memory.stat").unlink()
    (memory / "memory.usage_in_bytes").unlink()
    node, tasks = sampler.sample(now=3.0)
    assert tasks == [] and sampler.tracked() == []
    assert node.memory_total_bytes == 1000 * 1024
    sampler.untrack("t1")  # idempotent


def test_v2_files(tmp_path: pathlib.Path) -> None:
    proc, cg = tmp_path / "proc", tmp_path / "cgroup"
    _write(proc / "self" / "mountinfo", f"30 23 0:27 / {cg} rw - cgroup2 cgroup2 rw\n")
    _write(proc / "7" / "cgroup", "0::/system.slice/docker-abc.scope\n")
    _write(proc / "stat", _proc_stat(user=100, idle=100))
    _write(proc / "meminfo", "MemTotal: 2000 kB\nMemAvailable: 500 kB\n")
    d = cg / "system.slice" / "docker-abc.scope"
    _write(d / "cpu.stat", "usage_usec 1000000\nuser_usec 900000\nsystem_usec 100000\n")
    _write(d / "memory.current", "3000\n")
    _write(d / "memory.stat", "anon 1000\nfile 2000\nactive_file 1500\ninactive_file 500\n")
    _write(d / "memory.max", "max\n")
    sampler = LoadSampler(proc_root=str(proc), cgroup_root=str(cg))
    sampler.track("t", 7)
    assert sampler.sample(now=0.0)[1] == [TaskSample("t", 0.0, 2500, 0)]
    _write(d / "cpu.stat", "usage_usec 1250000\n")
    _write(d / "memory.max", "1048576\n")
    assert sampler.sample(now=0.5)[1] == [TaskSample("t", 0.5, 2500, 1 << 20)]


def test_without_cgroup_mounts_only_the_host_is_sampled(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    sampler, _, _ = _fake_v1(tmp_path)  # for its /proc files
    (tmp_path / "proc" / "self" / "mountinfo").write_text(
        f"31 23 0:28 / {tmp_path}/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n")
    sampler = LoadSampler(proc_root=str(tmp_path / "proc"), cgroup_root=str(tmp_path / "cgroup"))
    assert "no cgroup mounts" in caplog.text
    sampler.track("t1", 42)
    node, tasks = sampler.sample()
    assert (tasks, sampler.tracked(), node.cpu_cores_total) == ([], [], 2.0)


# ---------------------------------------------------------------------------------------------
# Real engine
# ---------------------------------------------------------------------------------------------


def _remove_labelled(value: str) -> None:
    for attempt in range(5):
        listed = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={LABEL}={value}"],
                                capture_output=True, text=True, timeout=60)
        ids = listed.stdout.split()
        if listed.returncode == 0 and not ids:
            return
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, timeout=60)
        time.sleep(0.2 * (attempt + 1))
    raise AssertionError(f"cannot remove the containers labelled {LABEL}={value}")


@pytest.fixture
def run(engine: None) -> Iterator[Callable[..., tuple[str, int]]]:
    """Starts a container (with an init) of the test image; returns its id and init pid."""
    value = uuid.uuid4().hex[:12]

    def start(*command: str, options: tuple[str, ...] = ()) -> tuple[str, int]:
        cid = docker("run", "-d", "--init", "--label", f"{LABEL}={value}", *options,
                     IMAGE, *command).strip()
        return cid, _pid(cid)

    yield start
    _remove_labelled(value)


def _pid(cid: str) -> int:
    return int(docker("inspect", "-f", "{{.State.Pid}}", cid))


def _cores_over(sampler: LoadSampler, task: str, seconds: float) -> list[float]:
    """cpu of `task` in each 0.5 s sample over `seconds` (the first, baseline sample dropped)."""
    seen: list[float] = []
    sampler.sample()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.5)
        seen += [t.cpu_cores for t in sampler.sample()[1] if t.task_id == task]
    return seen


@pytest.mark.engine
def test_busy_container_uses_a_core_and_idle_one_none(
    run: Callable[..., tuple[str, int]],
) -> None:
    sampler = LoadSampler()
    # The highest cpu weight, so that containers of other tests running on the same engine do
    # not starve it; what the whole host was doing is kept to explain a failure.
    _, busy_pid = run("sh", "-c", "while :; do :; done", options=("--cpu-shares", "262144"))
    _, idle_pid = run("sleep", "300")
    sampler.track("busy", busy_pid)
    sampler.track("idle", idle_pid)
    busy: list[float] = []
    host: list[float] = []
    sampler.sample()
    deadline = time.monotonic() + 3.0
    while not busy or busy[-1] < 0.8:
        assert time.monotonic() < deadline, f"busy container below 0.8 core: {busy}, host {host}"
        time.sleep(0.5)
        node, tasks = sampler.sample()
        host.append(node.cpu_cores_used)
        busy += [t.cpu_cores for t in tasks if t.task_id == "busy"]
    assert busy[-1] <= 1.1
    idle = _cores_over(sampler, "idle", 2.0)
    assert idle and max(idle) < 0.05, idle


_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
          "kB": 1000, "MB": 1000**2, "GB": 1000**3}


def _engine_memory(cid: str) -> int:
    """What `docker stats` shows as the container's memory use, in bytes."""
    usage = docker("stats", "--no-stream", "--format", "{{.MemUsage}}", cid).split("/")[0]
    match = re.fullmatch(r"\s*([\d.]+)\s*([A-Za-z]+)\s*", usage)
    assert match, usage
    return int(float(match[1]) * _UNITS[match[2]])


@pytest.mark.engine
def test_memory_agrees_with_docker_stats_and_limit_is_read(
    run: Callable[..., tuple[str, int]],
) -> None:
    # 40 MB of anonymous memory held by the shell (the loop keeps it from exec'ing sleep). While
    # it fills, usage peaks well above that: compare only once it says it is done.
    fill = ("x=$(busybox head -c 40000000 /dev/zero | busybox tr '\\0' a); echo filled; "
            "while :; do sleep 300; done")
    cid, pid = run("sh", "-c", fill, options=("--memory", "256m"))
    sampler = LoadSampler()
    sampler.track("mem", pid)

    def ours() -> int:
        [task] = sampler.sample()[1]
        assert task.memory_limit == 256 << 20
        return task.memory_bytes

    eventually(lambda: "filled" in docker("logs", cid), timeout=20, what="40 MB in use")
    # The engine's figure is read from the same cgroup; it is 0 now and then on a busy engine.
    engine = eventually(lambda: _engine_memory(cid), timeout=20, what="docker stats' usage")
    before, engine, after = ours(), _engine_memory(cid) or engine, ours()
    assert before > 40_000_000
    for mine in (before, after):
        assert abs(mine - engine) <= 0.1 * engine, (before, engine, after)

    _, unlimited_pid = run("sleep", "300")
    sampler.track("unlimited", unlimited_pid)
    limits = {t.task_id: t.memory_limit for t in sampler.sample()[1]}
    assert limits == {"mem": 256 << 20, "unlimited": 0}


@pytest.mark.engine
def test_stopped_container_is_dropped_and_a_restart_is_followed(
    run: Callable[..., tuple[str, int]],
) -> None:
    sampler = LoadSampler()
    cid, pid = run("sleep", "300")
    other, other_pid = run("sleep", "300")
    sampler.track("a", pid)
    sampler.track("b", other_pid)
    assert {t.task_id for t in sampler.sample()[1]} == {"a", "b"}
    docker("restart", "-t", "1", cid)
    docker("rm", "-f", other)
    assert [t.task_id for t in sampler.sample()[1]] == ["a"]  # same cgroup path, new cgroup
    assert sampler.tracked() == ["a"]
    new_pid = _pid(cid)
    assert new_pid != pid
    sampler.track("a", new_pid)
    assert [t.task_id for t in sampler.sample()[1]] == ["a"]


@pytest.mark.engine
def test_node_sample_is_sane(engine: None) -> None:
    sampler = LoadSampler()
    sampler.sample()
    time.sleep(0.3)
    node, tasks = sampler.sample()
    assert tasks == []
    assert node.cpu_cores_total == os.cpu_count()
    assert 0.0 <= node.cpu_cores_used <= node.cpu_cores_total
    assert 0 < node.memory_used_bytes <= node.memory_total_bytes
