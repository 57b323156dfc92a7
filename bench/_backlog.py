"""How often the replicas' accept queues overflowed, per traffic phase, for bench/update.py.

A listening socket whose accept queue is full drops a new connection's SYN (the kernel counts it
as TcpExt ListenOverflows in that network namespace); the client's SYN is sent again only after
1 s, so such a connection is answered a second late at best. busybox httpd listens with a backlog
of 9 and accepts in one process that forks per connection: on a busy machine a burst of
connections fills its queue. `BacklogWatch(cgroups)` polls, every POLL_S in a thread of its own,
the counter of every network namespace holding an `httpd` process of the given engine cgroups
(the simulated hosts' containers) and adds each namespace's increments to the current phase
(`phase(name)`); `stop()` ends the thread and returns phase -> overflows. A namespace is counted
from its first sighting: one that overflowed within POLL_S of its container's start and was
never seen before would be missed (a replica takes traffic only once its check passed).
"""

from __future__ import annotations

import os
import pathlib
import threading
from collections import Counter

from podium.lab import _system as system

POLL_S = 0.1


def listen_overflows(pid: int) -> tuple[int, int] | None:
    """(network namespace inode, TcpExt ListenOverflows) as process `pid` sees them."""
    try:
        inode = os.stat(f"/proc/{pid}/ns/net").st_ino
        lines = pathlib.Path(f"/proc/{pid}/net/netstat").read_text().splitlines()
    except OSError:  # gone meanwhile
        return None
    for head, values in zip(lines[::2], lines[1::2], strict=False):
        if head.startswith("TcpExt:"):
            found = dict(zip(head.split()[1:], values.split()[1:], strict=False))
            return inode, int(found.get("ListenOverflows", 0))
    return None


class BacklogWatch:
    def __init__(self, cgroups: list[str]) -> None:
        self._cgroups = cgroups
        self._phase = "start"
        self._last: dict[int, int] = {}  # namespace inode -> counter
        self.overflows: Counter[str] = Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="backlog-watch", daemon=True)
        self._thread.start()

    def phase(self, name: str) -> None:
        with self._lock:
            self._sample()  # what came before belongs to the phase that ends
            self._phase = name

    def stop(self) -> dict[str, int]:
        self._stop.set()
        self._thread.join(timeout=10)
        with self._lock:
            self._sample()
            return dict(self.overflows)

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            with self._lock:
                self._sample()

    def _sample(self) -> None:
        seen: set[int] = set()
        for cgroup in self._cgroups:
            for pid in system.cgroup_pids(cgroup):
                if not system.cmdline(pid).startswith(b"httpd\0"):
                    continue
                found = listen_overflows(pid)
                if found is None or found[0] in seen:
                    continue
                inode, count = found
                seen.add(inode)
                before = self._last.get(inode)
                if before is not None and count > before:
                    self.overflows[self._phase] += count - before
                self._last[inode] = count
