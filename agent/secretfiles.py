"""Secrets and configs as files in containers, from memory only.

Contract:
- The data arrives with the assignments (`remember`) and is kept in this process's memory by
  the secret's id. A complete set replaces what is kept: the node holds only what its tasks use.
- Files are written only into a tmpfs at DATA_DIR/secrets, which `open()` mounts (size
  TMPFS_SIZE, mode 0700) unless a tmpfs is there already (an agent restarting, or a harness that
  mounted it where the engine sees it): secret data never touches the node's disk. One directory
  per task holds its files, each with the uid, gid and mode the reference asks.
- `prepare(task)` writes the task's files and returns the engine's bind mounts for them
  (read-only; secrets at /run/secrets/TARGET, configs at TARGET). The bind sources must be
  visible to the engine: the agent and the engine share a mount namespace (or the tmpfs was
  mounted where both see it).
- `release(container_id)` removes the directory of the task whose container that was;
  `prune(task_ids)` removes those of tasks with no container left (containers adopted by a
  restarted agent, removed behind its back), never one whose container is being created.
- Nothing here logs or raises with a secret's data: only names and ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pathlib
import shutil
from collections.abc import Iterable
from typing import Any

from podium.agent.executor import ExecutorError
from podium.v1 import objects

log = logging.getLogger(__name__)

# Room for the files of a node's tasks: 128 files of the largest size the manager accepts.
TMPFS_SIZE = "64m"
SECRETS_DIR = "/run/secrets"


def is_tmpfs(path: pathlib.Path, mountinfo: str | None = None) -> bool:
    """Whether `path` is the mount point of a tmpfs in this mount namespace."""
    if mountinfo is None:
        try:
            mountinfo = pathlib.Path("/proc/self/mountinfo").read_text()
        except OSError:
            return False
    found = False
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        point = fields[4].replace("\\040", " ")
        if point == str(path):
            found = fields[sep + 1] == "tmpfs"  # the last mount on a point is the one seen
    return found


class SecretFiles:
    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self._data: dict[str, objects.Secret] = {}
        self._mounted = False
        self._error = ""
        self._containers: dict[str, str] = {}  # container id -> task id
        self._busy: set[str] = set()  # tasks whose container is being created

    async def open(self) -> None:
        """Mounts the tmpfs once; a failure is kept and reported by every prepare() that needs
        it (tasks without secrets run regardless)."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if is_tmpfs(self.root):
            self._mounted = True
            return
        proc = await asyncio.create_subprocess_exec(
            "mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "tmpfs", str(self.root),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await proc.communicate()
        if proc.returncode == 0 and is_tmpfs(self.root):
            self._mounted = True
            log.info("secrets and configs are kept in a tmpfs at %s", self.root)
        else:
            self._error = (f"cannot mount a tmpfs at {self.root} for secrets and configs: "
                           f"{out.decode(errors='replace').strip() or 'mount failed'}")
            log.warning("%s", self._error)

    def remember(self, assignments: Iterable[objects.Secret], *, complete: bool) -> None:
        if complete:
            self._data.clear()
        for secret in assignments:
            self._data[secret.id] = secret

    def known(self) -> set[str]:
        return set(self._data)

    def prepare(self, task: objects.Task) -> list[dict[str, Any]]:
        """Writes the task's files; the engine's Mounts for them. Raises ExecutorError."""
        container = task.spec.container
        refs = [(r, SECRETS_DIR + "/" + r.target, "s") for r in container.secrets]
        refs += [(r, r.target, "c") for r in container.configs]
        if not refs:
            return []
        if not self._mounted:
            raise ExecutorError(self._error or "no tmpfs for secrets and configs yet")
        self._busy.add(task.id)
        directory = self.root / task.id
        directory.mkdir(mode=0o700, exist_ok=True)
        mounts = []
        for i, (ref, target, prefix) in enumerate(refs):
            secret = self._data.get(ref.id)
            if secret is None:
                word = "secret" if prefix == "s" else "config"
                raise ExecutorError(f"{word} {ref.name!r} (id {ref.id}) was not sent to this node")
            path = directory / f"{prefix}{i}"
            _write(path, secret.spec.data, int(ref.uid or 0), int(ref.gid or 0), ref.mode or 0o444)
            mounts.append({"Type": "bind", "Source": str(path), "Target": target,
                           "ReadOnly": True})
        return mounts

    def created(self, task_id: str, container_id: str | None) -> None:
        """The container create that followed prepare() ended (None: it failed)."""
        self._busy.discard(task_id)
        if container_id:
            self._containers[container_id] = task_id

    def release(self, container_id: str) -> None:
        task_id = self._containers.pop(container_id, None)
        if task_id is not None and task_id not in self._containers.values():
            self._remove(task_id)

    def prune(self, task_ids: Iterable[str]) -> None:
        """Removes the directories of tasks that have no container in `task_ids`."""
        if not self._mounted:
            return
        keep = set(task_ids) | self._busy
        with contextlib.suppress(FileNotFoundError):
            for entry in self.root.iterdir():
                if entry.name not in keep:
                    self._remove(entry.name)

    def _remove(self, task_id: str) -> None:
        if task_id in self._busy:
            return
        shutil.rmtree(self.root / task_id, ignore_errors=True)


def _write(path: pathlib.Path, data: bytes, uid: int, gid: int, mode: int) -> None:
    """Idempotent: a file already there keeps its inode (a running container's bind mount
    refers to it); a version's content never changes, so it is written once."""
    if path.exists():
        return
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        # The mode first, while this process owns the file: an agent that is not root may
        # give the file away (CAP_CHOWN, as its unit grants) but not change it afterwards.
        os.fchmod(fd, mode)
        os.fchown(fd, uid, gid)
    finally:
        os.close(fd)
    os.replace(tmp, path)
