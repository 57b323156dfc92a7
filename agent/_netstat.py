"""Open TCP connections inside a container, read from /proc/PID/net/tcp{,6}: those files show the
sockets of the network namespace the process lives in, which is the container's own."""

from __future__ import annotations

from collections.abc import Collection

_ESTABLISHED = "01"


def established(pid: int, ports: Collection[int], proc_root: str = "/proc") -> int:
    """Established connections to any of `ports` (local side) in `pid`'s network namespace;
    0 when the process is gone."""
    wanted = {f"{port:04X}" for port in ports}
    count = 0
    for name in ("tcp", "tcp6"):
        try:
            with open(f"{proc_root}/{pid}/net/{name}") as table:
                next(table, None)  # header
                for line in table:
                    fields = line.split()
                    if len(fields) > 3 and fields[3] == _ESTABLISHED and (
                        fields[1].rpartition(":")[2] in wanted
                    ):
                        count += 1
        except OSError:
            continue
    return count
