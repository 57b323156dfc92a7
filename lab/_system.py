"""Linux plumbing for the simulated hosts of podium.lab.hosts: network namespaces, cgroup
hierarchies and mounts, the processes of a host, and its engine's socket. Needs root."""

from __future__ import annotations

import contextlib
import os
import pathlib
import shlex
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator

CGROUP_ROOT = "/sys/fs/cgroup"


def ip(*args: str, stdin: str | None = None) -> None:
    result = subprocess.run(["ip", *args], input=stdin, capture_output=True, text=True,
                            timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def delete_netns(netns: str) -> None:
    result = subprocess.run(["ip", "netns", "delete", netns], capture_output=True, text=True,
                            timeout=30)
    if result.returncode != 0 and os.path.exists(f"/run/netns/{netns}"):
        raise RuntimeError(f"ip netns delete {netns}: {result.stderr.strip()}")


def netns_exec(netns: str) -> list[str]:
    return ["ip", "netns", "exec", netns]


def host_exec(netns: str, setup: list[str], argv: list[str]) -> list[str]:
    """argv in the netns, in a fresh mount namespace prepared by the `setup` shell commands."""
    script = "set -e\n" + "\n".join(setup) + '\nexec "$@"\n'
    return [*netns_exec(netns), "sh", "-c", script, "sh", *argv]


def cgroup_mount_commands() -> list[str]:
    """Shell commands that mount the root namespace's cgroup hierarchies again under
    /sys/fs/cgroup (which `ip netns exec` left empty), with the same options."""
    mounts: list[tuple[str, str, str]] = []  # (point, type, options)
    for fields, fstype, superopts in mountinfo():
        point = fields[4]
        if fstype in ("cgroup", "cgroup2") and (
                point == CGROUP_ROOT or point.startswith(CGROUP_ROOT + "/")):
            keep = [o for o in fields[5].split(",") + superopts.split(",")
                    if o not in ("rw", "") and not o.startswith("release_agent=")]
            mounts.append((point, fstype, ",".join(dict.fromkeys(keep))))
    commands: list[str] = []
    if all(point != CGROUP_ROOT for point, _, _ in mounts):
        commands.append(f"mount -t tmpfs -o mode=755 podium-cgroups {CGROUP_ROOT}")
    for point, fstype, opts in mounts:
        q = shlex.quote(point)
        if point != CGROUP_ROOT:
            commands.append(f"mkdir -p {q}")
        commands.append(f"mount -t {fstype} -o {shlex.quote(opts or 'defaults')} {fstype} {q}")
    with contextlib.suppress(OSError):
        for entry in sorted(os.scandir(CGROUP_ROOT), key=lambda e: e.name):
            if entry.is_symlink():  # e.g. cpu -> cpu,cpuacct
                commands.append(f"ln -sfn {shlex.quote(os.readlink(entry.path))} "
                                f"{shlex.quote(entry.path)}")
    return commands


def mountinfo() -> Iterator[tuple[list[str], str, str]]:
    """(fields before the separator, fstype, super options) for each mount of this process."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            before, _, after = line.partition(" - ")
            rest = after.split()
            if len(rest) >= 3:
                yield before.split(), rest[0], rest[2]


def cgroup_points() -> list[str]:
    return [fields[4] for fields, fstype, _ in mountinfo() if fstype in ("cgroup", "cgroup2")]


def cgroup_dirs(cgroup: str) -> list[str]:
    """The directories of the cgroup and its descendants in every hierarchy, deepest first."""
    found: list[str] = []
    for point in cgroup_points():
        top = os.path.join(point, cgroup)
        for dirpath, _, _ in os.walk(top):
            found.append(dirpath)
    return sorted(found, key=lambda p: p.count("/"), reverse=True)


def cgroup_pids(cgroup: str) -> set[int]:
    pids: set[int] = set()
    for path in cgroup_dirs(cgroup):
        with contextlib.suppress(OSError):
            pids.update(int(p) for p in pathlib.Path(path, "cgroup.procs").read_text().split())
    return pids


def remove_cgroup(cgroup: str) -> None:
    """Removes the (empty) cgroup directories, as a reboot would; raises if one is busy."""
    for path in cgroup_dirs(cgroup):
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(path)


def netns_pids(netns: str) -> set[int]:
    """Processes whose network namespace is /run/netns/<netns> (what `ip netns pids` does)."""
    try:
        ns = os.stat(f"/run/netns/{netns}")
    except FileNotFoundError:
        return set()
    pids: set[int] = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                st = os.stat(f"/proc/{entry}/ns/net")
            except OSError:  # gone, or a zombie
                continue
            if (st.st_dev, st.st_ino) == (ns.st_dev, ns.st_ino):
                pids.add(int(entry))
    return pids


def signal_pid(pid: int, sig: int, still_ours: Callable[[int], bool]) -> None:
    """Signals `pid` through a pidfd opened before re-checking that it is still ours, so that a
    pid reused meanwhile by some other process is never signalled."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        if still_ours(pid):
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(fd, sig)
    finally:
        os.close(fd)


def cmdline(pid: int) -> bytes:
    try:
        return pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def listening(netns: str, port: int) -> bool:
    """Whether some process of the netns has a TCP socket listening on `port` there."""
    for pid in sorted(netns_pids(netns)):
        for table in ("tcp", "tcp6"):
            try:
                lines = pathlib.Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    return True
        return False  # every process of the netns sees the same tables
    return False


def engine_answers(path: pathlib.Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(str(path))
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            status = s.recv(64).split(b"\r\n", 1)[0].split()  # [b"HTTP/1.0", b"200", b"OK"]
            return status[1:2] == [b"200"]
    except OSError:
        return False


def data_paths(data: pathlib.Path) -> list[pathlib.Path]:
    """What close() removes from a data directory: everything but the logs."""
    if not data.is_dir():
        return []
    return [p for p in data.iterdir() if p.suffix != ".log"]


def remove(path: pathlib.Path) -> None:
    if path.is_dir() and not path.is_symlink():
        with contextlib.suppress(FileNotFoundError):  # someone else's cleanup got there first
            shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def mounts_under(*roots: pathlib.Path) -> list[str]:
    prefixes = [str(r).rstrip("/") + "/" for r in roots]
    return [fields[4] for fields, _, _ in mountinfo()
            if any((fields[4] + "/").startswith(p) for p in prefixes)]


def mount_tmpfs(path: pathlib.Path) -> None:
    """A tmpfs at `path` in this (the root) namespace, unless one is there. Each `ip netns exec`
    namespace made afterwards starts with a copy of it (the same tmpfs), so a host's agent and
    its engine both see it; one made later would not reach them (/ may be private here). The
    agent keeps its secrets' files there (podium.agent.secretfiles)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if str(path) not in mounts_under(path.parent):
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs", str(path)],
                       check=True, capture_output=True, timeout=30)


def unmount(path: pathlib.Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def unmount_under(*roots: pathlib.Path) -> None:
    """The agents' secret tmpfs (mount_tmpfs) are the only mounts the harness makes there in
    this namespace; this also makes sure that the removal that follows cannot reach through a
    mount into something else."""
    for point in sorted(mounts_under(*roots), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, timeout=30)
