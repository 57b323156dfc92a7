"""Load of this host and of its containers, read straight from /proc and the cgroup files.

Contract:
- `LoadSampler.sample()` is synchronous and cheap: a handful of small file reads per tracked
  container and two for the host, no engine call (the engine's one-shot stats take 1-2 s each).
- A container is followed by its init pid (inspect's State.Pid): `track()` maps it onto its
  cgroup directories once, through /proc/<pid>/cgroup and the cgroup mounts of this process
  (/proc/self/mountinfo), so it works whatever the engine's --cgroup-parent is. `track()` is
  idempotent; a new pid (the container restarted) resolves again and restarts the cpu baseline.
  A pid that is already gone is ignored.
- cpu_cores is the growth of the cgroup's cpu time since the previous sample of that container
  over the wall time between the two; the first sample of a container reports 0.0.
- memory_bytes is what `docker stats` shows: usage minus inactive file pages (cgroup v1:
  memory.usage_in_bytes - total_inactive_file, v2: memory.current - inactive_file), the plain
  usage when that key is missing or not smaller. memory_limit is 0 when there is none.
- A container whose cgroup files cannot be read (it stopped) is left out of the result and
  forgotten; sample() never raises for one container.
- The host: cpu from /proc/stat (busy jiffies over all jiffies since the previous sample, times the
  online cpus; 0.0 on the first sample), memory used = MemTotal - MemAvailable.
- cgroup v1 (also "hybrid", with an empty cgroup2 at unified/) and v2 are both read; the mode
  comes from the cgroup mounts under `cgroup_root`. With no cgroup mount there (a fresh mount
  namespace, as `ip netns exec` makes, shows none) a warning is logged once, nothing can be
  tracked and only the host is sampled.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass

# memory.limit_in_bytes reads 2**63 rounded down to a page when unlimited.
_NO_LIMIT = 2**60
_ESCAPE = re.compile(rb"\\([0-7]{3})")
_log = logging.getLogger(__name__)


@dataclass(slots=True, frozen=True)
class TaskSample:
    task_id: str
    cpu_cores: float
    memory_bytes: int
    memory_limit: int  # 0: no limit


@dataclass(slots=True, frozen=True)
class NodeSample:
    cpu_cores_used: float
    cpu_cores_total: float
    memory_used_bytes: int
    memory_total_bytes: int


@dataclass(slots=True)
class _Tracked:
    pid: int
    cpu_dir: str
    memory_dir: str
    last_cpu_ns: int = -1  # -1: no sample yet
    last_time: float = 0.0


@dataclass(slots=True, frozen=True)
class _Mount:
    point: str  # where the hierarchy is mounted
    root: str  # which of its cgroups is mounted there ("/" unless bind-mounted or namespaced)

    def directory(self, cgroup: str) -> str | None:
        if self.root == "/":
            return self.point + cgroup.rstrip("/")
        if cgroup == self.root or cgroup.startswith(self.root + "/"):
            return self.point + cgroup[len(self.root):]
        return None  # outside what this mount shows


def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 65536)
    finally:
        os.close(fd)


def _field(data: bytes, key: bytes) -> int | None:
    """The number after `key` at the start of a line of a "key value" file, if any."""
    at = (b"\n" + data).find(b"\n" + key + b" ")
    if at < 0:
        return None
    start = at + len(key) + 1
    end = data.find(b"\n", start)
    return int((data[start:] if end < 0 else data[start:end]).split()[0])


def _unescape(path: bytes) -> str:
    return os.fsdecode(_ESCAPE.sub(lambda m: bytes([int(m[1], 8)]), path))


class LoadSampler:
    """Samples host and per-container load; see the module docstring for the contract."""

    def __init__(self, *, proc_root: str = "/proc", cgroup_root: str = "/sys/fs/cgroup") -> None:
        self._proc = proc_root.rstrip("/")
        self._tracked: dict[str, _Tracked] = {}
        self._last_jiffies: tuple[int, int] | None = None  # (busy, total)
        self._v1: dict[str, _Mount] = {}  # controller -> mount
        self._v2: _Mount | None = None
        self._find_mounts(cgroup_root.rstrip("/") or "/")

    def _find_mounts(self, cgroup_root: str) -> None:
        with open(f"{self._proc}/self/mountinfo", "rb") as f:
            lines = f.read().splitlines()
        for line in lines:
            # id parent major:minor root mountpoint options [optional...] - fstype source superopts
            left, _, right = line.partition(b" - ")
            fields, after = left.split(b" "), right.split(b" ")
            if len(fields) < 5 or len(after) < 3 or after[0] not in (b"cgroup", b"cgroup2"):
                continue
            point = _unescape(fields[4])
            if point != cgroup_root and not point.startswith(cgroup_root.rstrip("/") + "/"):
                continue
            mount = _Mount(point.rstrip("/"), _unescape(fields[3]))
            if after[0] == b"cgroup2":
                self._v2 = self._v2 or mount
                continue
            for option in after[2].decode().split(","):
                self._v1.setdefault(option, mount)
        if "cpuacct" in self._v1 and "memory" in self._v1:
            self._v2 = None  # v1 or hybrid: the cgroup2 mount (if any) holds no controller
        else:
            self._v1.clear()
            if self._v2 is None:
                # e.g. under `ip netns exec`, which remounts /sys without the cgroup hierarchies.
                _log.warning("no cgroup mounts under %s: container load is not reported",
                             cgroup_root)

    def track(self, task_id: str, pid: int) -> None:
        """Follows the container whose init process is `pid` (idempotent)."""
        known = self._tracked.get(task_id)
        if known is not None and known.pid == pid:
            return
        self._tracked.pop(task_id, None)
        resolved = self._resolve(pid)
        if resolved is not None:
            self._tracked[task_id] = _Tracked(pid, *resolved)

    def untrack(self, task_id: str) -> None:
        self._tracked.pop(task_id, None)

    def tracked(self) -> list[str]:
        return list(self._tracked)

    def _resolve(self, pid: int) -> tuple[str, str] | None:
        if self._v2 is None and not self._v1:
            return None  # no cgroup hierarchy to read
        try:
            lines = _read(f"{self._proc}/{pid}/cgroup").decode().splitlines()
        except OSError:
            return None  # gone already
        cpu_dir = memory_dir = None
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if self._v2 is not None:
                if controllers == "":
                    cpu_dir = memory_dir = self._v2.directory(path)
                continue
            names = controllers.split(",")
            if "cpuacct" in names:
                cpu_dir = self._v1["cpuacct"].directory(path)
            if "memory" in names:
                memory_dir = self._v1["memory"].directory(path)
        if cpu_dir is None or memory_dir is None:
            return None
        return cpu_dir, memory_dir

    def sample(self, now: float | None = None) -> tuple[NodeSample, list[TaskSample]]:
        """The host's load and that of each tracked container still running."""
        now = time.monotonic() if now is None else now
        tasks: list[TaskSample] = []
        for task_id, tracked in list(self._tracked.items()):
            try:
                tasks.append(self._sample_task(task_id, tracked, now))
            except (OSError, ValueError):
                # Its cgroup went away (or is being torn down): the container stopped.
                del self._tracked[task_id]
        return self._sample_node(), tasks

    def _sample_task(self, task_id: str, tracked: _Tracked, now: float) -> TaskSample:
        if self._v2 is None:
            cpu_ns = int(_read(tracked.cpu_dir + "/cpuacct.usage"))
            usage = int(_read(tracked.memory_dir + "/memory.usage_in_bytes"))
            stat = _read(tracked.memory_dir + "/memory.stat")
            inactive = _field(stat, b"total_inactive_file")
            limit = int(_read(tracked.memory_dir + "/memory.limit_in_bytes"))
        else:
            usec = _field(_read(tracked.cpu_dir + "/cpu.stat"), b"usage_usec")
            cpu_ns = 1000 * (usec or 0)
            usage = int(_read(tracked.memory_dir + "/memory.current"))
            inactive = _field(_read(tracked.memory_dir + "/memory.stat"), b"inactive_file")
            raw = _read(tracked.memory_dir + "/memory.max").strip()
            limit = 0 if raw == b"max" else int(raw)
        cores = 0.0
        elapsed = now - tracked.last_time
        if tracked.last_cpu_ns >= 0 and elapsed > 0 and cpu_ns >= tracked.last_cpu_ns:
            cores = (cpu_ns - tracked.last_cpu_ns) / 1e9 / elapsed
        tracked.last_cpu_ns, tracked.last_time = cpu_ns, now
        if inactive is not None and inactive < usage:
            usage -= inactive
        return TaskSample(task_id, cores, usage, 0 if limit >= _NO_LIMIT else limit)

    def _sample_node(self) -> NodeSample:
        stat = _read(f"{self._proc}/stat")
        first = stat[: stat.find(b"\n")].split()
        # user nice system idle iowait irq softirq steal (guest time is already in user/nice).
        jiffies = [int(v) for v in first[1:9]]
        total = sum(jiffies)
        busy = total - jiffies[3] - jiffies[4]
        ncpu = stat.count(b"\ncpu")  # one "cpuN" line per online cpu
        cores = 0.0
        if self._last_jiffies is not None and total > self._last_jiffies[1]:
            last_busy, last_total = self._last_jiffies
            cores = max(0.0, (busy - last_busy) / (total - last_total) * ncpu)
        self._last_jiffies = (busy, total)
        meminfo = _read(f"{self._proc}/meminfo")
        mem_total = 1024 * (_field(meminfo, b"MemTotal:") or 0)
        available = 1024 * (_field(meminfo, b"MemAvailable:") or 0)
        return NodeSample(cores, float(ncpu), mem_total - available, mem_total)
