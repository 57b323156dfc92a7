"""Reading a process's memory and cpu time from /proc, shared by the benchmarks.

- `status_value(pid, key)`: the number on a `key:` line of /proc/PID/status (KiB for Vm*).
- `cpu_seconds(pid)`: utime + stime of the process (all its threads) from /proc/PID/stat.
- `tree_cpu_seconds(pid)`: the same summed over the process and all its descendants (a proxy
  and its worker processes).
- `observe(processes, window)`: records each `Watched` process's cpu time at the start and end
  of a window and samples its VmRSS once a second in between (bounded: one sample per whole
  second of the window, plus one at the end); returns the window's wall time.
"""

from __future__ import annotations

import os
import pathlib
import statistics
import time
from dataclasses import dataclass, field

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def status_value(pid: int, key: str) -> int:
    """The number on a `key:` line of /proc/PID/status (KiB for the Vm* keys)."""
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads), in seconds."""
    stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    # Fields after the parenthesised command name, which may itself contain spaces.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:  # the thread ended meanwhile
            continue
    return children


def tree_cpu_seconds(pid: int) -> float:
    """cpu_seconds of `pid` and of every process descended from it (alive at the call)."""
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            total += cpu_seconds(current)
            todo += _children(current)
        except (FileNotFoundError, ProcessLookupError):
            continue  # exited meanwhile
    return total


@dataclass(slots=True)
class Watched:
    name: str
    pid: int
    rss_kib: list[int] = field(default_factory=list)
    cpu_start: float = 0.0
    cpu_end: float = 0.0

    def sample(self) -> None:
        self.rss_kib.append(status_value(self.pid, "VmRSS"))

    def rss_mb(self) -> float:
        """The median RSS sample, in MiB."""
        return statistics.median(self.rss_kib) / 1024

    def cpu_pct(self, elapsed: float) -> float:
        """The window's cpu time over its wall time, in percent of one core."""
        return 100 * (self.cpu_end - self.cpu_start) / elapsed


def observe(processes: list[Watched], window: float) -> float:
    """Samples RSS once a second over `window` seconds; returns the window's wall time."""
    for proc in processes:
        proc.cpu_start = cpu_seconds(proc.pid)
    started = time.monotonic()
    for second in range(max(1, int(window))):
        for proc in processes:
            proc.sample()
        time.sleep(max(0.0, started + second + 1 - time.monotonic()))
    elapsed = time.monotonic() - started
    for proc in processes:
        proc.cpu_end = cpu_seconds(proc.pid)
        proc.sample()
    return elapsed
