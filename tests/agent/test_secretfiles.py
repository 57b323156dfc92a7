"""The agent's secret files: written only into a tmpfs it mounts, with the owner and mode asked,
bind-mounted read-only, removed with their task's container."""

from __future__ import annotations

import asyncio
import collections.abc
import os
import pathlib
import stat
import subprocess

import pytest

from podium.agent.executor import ExecutorError
from podium.agent.secretfiles import SecretFiles, is_tmpfs
from podium.v1 import objects

SECRET = objects.SecretSpec.KIND_SECRET
CONFIG = objects.SecretSpec.KIND_CONFIG

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:40 / /data/agent/secrets rw,relatime - tmpfs tmpfs rw,size=65536k,mode=700
31 22 8:1 /x /data/agent/other rw,relatime - ext4 /dev/sda1 rw
"""


def test_is_tmpfs_reads_the_mount_table() -> None:
    assert is_tmpfs(pathlib.Path("/data/agent/secrets"), MOUNTINFO)
    assert not is_tmpfs(pathlib.Path("/data/agent/other"), MOUNTINFO)
    assert not is_tmpfs(pathlib.Path("/data/agent"), MOUNTINFO)


@pytest.fixture
def files(tmp_path: pathlib.Path) -> collections.abc.Iterator[SecretFiles]:
    if os.geteuid() != 0:
        pytest.fail("mounting a tmpfs needs root (the test machines run as root)")
    files = SecretFiles(tmp_path / "secrets")
    asyncio.run(files.open())
    try:
        yield files
    finally:
        subprocess.run(["umount", "-l", str(files.root)], check=False, timeout=30)


def _task(task_id: str) -> objects.Task:
    task = objects.Task(id=task_id)
    task.spec.container.secrets.add(id="s1", name="db_password", target="db_password",
                                    uid="1000", gid="1001", mode=0o400)
    task.spec.container.configs.add(id="c1", name="app_conf", target="/etc/app.conf",
                                    uid="0", gid="0", mode=0o444)
    return task


def _secret(id: str, name: str, data: bytes, kind: int) -> objects.Secret:
    return objects.Secret(id=id, spec=objects.SecretSpec(
        kind=kind, name=name, data=data))  # type: ignore[arg-type]


def test_files_live_in_a_tmpfs_with_the_mode_asked(files: SecretFiles) -> None:
    assert is_tmpfs(files.root)
    files.remember([_secret("s1", "db_password", b"hunter2", SECRET),
                    _secret("c1", "app_conf", b"a=1\n", CONFIG)], complete=True)
    mounts = files.prepare(_task("t1"))
    files.created("t1", "container1")
    assert [(m["Target"], m["ReadOnly"], m["Type"]) for m in mounts] == [
        ("/run/secrets/db_password", True, "bind"), ("/etc/app.conf", True, "bind")]
    secret_file = pathlib.Path(mounts[0]["Source"])
    assert secret_file.is_relative_to(files.root)
    assert secret_file.read_bytes() == b"hunter2"
    info = secret_file.stat()
    assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o400, 1000, 1001)
    assert pathlib.Path(mounts[1]["Source"]).read_bytes() == b"a=1\n"
    # Again (a container adopted after a create that raced): the same files, untouched.
    assert files.prepare(_task("t1")) == mounts
    files.created("t1", "container1")
    files.release("container1")
    assert not (files.root / "t1").exists()


def test_missing_data_is_a_task_error_naming_it(files: SecretFiles) -> None:
    files.remember([_secret("c1", "app_conf", b"a=1\n", CONFIG)], complete=True)
    with pytest.raises(ExecutorError, match=r"secret 'db_password' .* was not sent to this node"):
        files.prepare(_task("t1"))
    files.created("t1", None)


def test_a_complete_set_forgets_what_it_does_not_hold(files: SecretFiles) -> None:
    files.remember([_secret("s1", "a", b"1", SECRET)], complete=True)
    files.remember([_secret("s2", "b", b"2", SECRET)], complete=False)
    assert files.known() == {"s1", "s2"}
    files.remember([_secret("s2", "b", b"2", SECRET)], complete=True)
    assert files.known() == {"s2"}


def test_prune_keeps_tasks_with_a_container_or_being_created(files: SecretFiles) -> None:
    files.remember([_secret("s1", "db_password", b"x", SECRET),
                    _secret("c1", "app_conf", b"y", CONFIG)], complete=True)
    for task_id in ("gone", "kept", "creating"):
        files.prepare(_task(task_id))
        if task_id != "creating":
            files.created(task_id, f"c-{task_id}")
    files.prune(["kept"])
    assert sorted(p.name for p in files.root.iterdir()) == ["creating", "kept"]


def test_without_a_tmpfs_tasks_with_secrets_fail_clearly(tmp_path: pathlib.Path) -> None:
    files = SecretFiles(tmp_path / "secrets")  # never opened: no tmpfs
    files.remember([_secret("s1", "db_password", b"x", SECRET)], complete=True)
    with pytest.raises(ExecutorError, match="tmpfs"):
        files.prepare(_task("t1"))
    assert not any((tmp_path / "secrets").glob("*"))
