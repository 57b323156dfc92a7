"""The backup archive (podium.manager.backup): a restore gives back the state, the key ring and
the CA with private modes; an archive that is corrupt, cut short or carries a member its
manifest does not list is refused, as is a target that is not empty, and either way nothing
is left at the target. A snapshot taken while another connection writes is consistent."""

from __future__ import annotations

import io
import os
import pathlib
import sqlite3
import stat
import tarfile
import threading
from collections.abc import Callable

import pytest

from podium.manager import secrets
from podium.manager.backup import BackupError, backup, restore
from podium.manager.main import main
from podium.manager.pki import ClusterCA
from podium.manager.store import KeyRing, SqliteStore
from podium.v1 import objects

PLAIN = b"backup-secret-3f9a"


def _data_dir(root: pathlib.Path) -> tuple[pathlib.Path, SqliteStore, str]:
    """A manager's data dir with one secret, its store left open (as a running manager's)."""
    data = root / "data"
    store = SqliteStore(data / "state.db", sealer=KeyRing.open(data / "keys"))
    ClusterCA.load_or_create(data / "pki")
    spec = objects.SecretSpec(kind=objects.SecretSpec.KIND_SECRET, name="pw", data=PLAIN)
    made = store.update_now(lambda tx: secrets.create(tx, spec))
    return data, store, made.id


def _mode(path: pathlib.Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _rewrite(archive: pathlib.Path,
             change: Callable[[str, bytes], list[tuple[str, bytes]]]) -> None:
    """Rewrites `archive` member by member: `change(name, data)` returns what to write instead."""
    with tarfile.open(archive) as tar:
        members = [(m.name, tar.extractfile(m).read())  # type: ignore[union-attr]
                   for m in tar.getmembers()]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members:
            for new_name, new_data in change(name, data):
                info = tarfile.TarInfo(new_name)
                info.size = len(new_data)
                tar.addfile(info, io.BytesIO(new_data))
    archive.write_bytes(buf.getvalue())


def test_a_restore_gives_back_state_keys_and_ca_with_private_modes(
        tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, store, secret_id = _data_dir(tmp_path)
    archive = tmp_path / "backup.tar"
    assert main(["backup", "--data-dir", str(data), str(archive)]) == 0
    out = capsys.readouterr().out
    assert "0600" in out and "secrets key" in out and "CA" in out
    store.close()
    assert _mode(archive) == 0o600
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert names == ["MANIFEST", "state.db", "keys/secrets.keys", "pki/ca.crt", "pki/ca.key"]

    target = tmp_path / "new" / "data"
    assert main(["restore", "--data-dir", str(target), str(archive)]) == 0
    assert _mode(target) == 0o700
    for sub in ("keys", "pki"):
        assert _mode(target / sub) == 0o700
    files = [p for p in target.rglob("*") if p.is_file()]
    assert sorted(p.relative_to(target).as_posix() for p in files) == sorted(names[1:])
    assert all(_mode(p) == 0o600 for p in files)
    for name in names[1:]:
        if name != "state.db":  # the snapshot is a copy, not the same bytes
            assert (target / name).read_bytes() == (data / name).read_bytes()
    restored = SqliteStore(target / "state.db", sealer=KeyRing.open(target / "keys"))
    secret = restored.view().get_secret(secret_id)
    assert secret is not None and secret.spec.data == PLAIN
    restored.close()
    ClusterCA.load_or_create(target / "pki")  # the CA loads (its key matches)


def test_an_empty_target_is_used_and_a_non_empty_one_refused(tmp_path: pathlib.Path) -> None:
    data, store, _ = _data_dir(tmp_path)
    archive = tmp_path / "backup.tar"
    backup(data, archive)
    store.close()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "state.db").write_bytes(b"keep me")
    with pytest.raises(BackupError, match="not empty"):
        restore(archive, busy)
    assert [p.name for p in busy.iterdir()] == ["state.db"]
    assert (busy / "state.db").read_bytes() == b"keep me"
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o755)
    restore(archive, empty)
    assert _mode(empty) == 0o700 and (empty / "keys" / "secrets.keys").exists()
    # No staging directory is left beside the targets.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.tar", "busy", "data", "empty"]


def _flip(name: str, data: bytes) -> list[tuple[str, bytes]]:
    if name == "pki/ca.key":
        data = data[:40] + bytes([data[40] ^ 1]) + data[41:]
    return [(name, data)]


def _drop_keys(name: str, data: bytes) -> list[tuple[str, bytes]]:
    return [] if name == "keys/secrets.keys" else [(name, data)]


def _add_stranger(name: str, data: bytes) -> list[tuple[str, bytes]]:
    return [(name, data), *([("../escape", b"x")] if name == "pki/ca.key" else [])]


@pytest.mark.parametrize(("change", "error"), [
    (_flip, "pki/ca.key is corrupt"),
    (_drop_keys, "missing keys/secrets.keys"),
    (_add_stranger, "not in its manifest"),
])
def test_a_corrupt_or_partial_archive_is_refused(
        tmp_path: pathlib.Path, change: Callable[[str, bytes], list[tuple[str, bytes]]],
        error: str) -> None:
    data, store, _ = _data_dir(tmp_path)
    archive = tmp_path / "backup.tar"
    backup(data, archive)
    store.close()
    _rewrite(archive, change)
    with pytest.raises(BackupError, match=error):
        restore(archive, tmp_path / "target")
    assert not (tmp_path / "target").exists()
    assert not (tmp_path / "escape").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.tar", "data"]


def test_an_archive_cut_short_is_refused(tmp_path: pathlib.Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    data, store, _ = _data_dir(tmp_path)
    archive = tmp_path / "backup.tar"
    backup(data, archive)
    store.close()
    whole = archive.read_bytes()
    for cut in (len(whole) // 2, 700, 3000):
        archive.write_bytes(whole[:cut])
        with pytest.raises(BackupError):
            restore(archive, tmp_path / "target")
        assert not (tmp_path / "target").exists()
    assert main(["restore", "--data-dir", str(tmp_path / "target"), str(archive)]) == 1
    assert "error:" in capsys.readouterr().err


def test_a_snapshot_is_consistent_while_another_connection_writes(
        tmp_path: pathlib.Path) -> None:
    data, store, _ = _data_dir(tmp_path)
    store.close()
    db = sqlite3.connect(data / "state.db", isolation_level=None, check_same_thread=False)
    db.execute("CREATE TABLE pairs (n INTEGER)")
    stop = threading.Event()

    def write() -> None:
        # Rows come in pairs, one transaction each: a consistent copy holds an even count.
        n = 0
        while not stop.is_set():
            db.execute("BEGIN")
            db.executemany("INSERT INTO pairs VALUES (?)", [(n,), (n,)])
            db.execute("COMMIT")
            n += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        counts = []
        for i in range(5):
            archive = tmp_path / f"b{i}.tar"
            backup(data, archive)
            target = tmp_path / f"r{i}"
            restore(archive, target)
            copy = sqlite3.connect(target / "state.db")
            (count,) = copy.execute("SELECT count(*) FROM pairs").fetchone()
            copy.close()
            counts.append(count)
    finally:
        stop.set()
        writer.join()
        db.close()
    assert all(c % 2 == 0 for c in counts) and counts[-1] > 0, counts


def test_a_backup_leaves_the_database_files_to_their_owner(tmp_path: pathlib.Path) -> None:
    data, store, _ = _data_dir(tmp_path)
    store.close()
    for path in data.glob("state.db*"):
        os.chown(path, 4321, 4321)  # a manager run as its own user; this test runs as root
    # A reader open at the time keeps the log files in place after the backup's connection.
    reader = sqlite3.connect(data / "state.db")
    reader.execute("SELECT count(*) FROM objects").fetchone()
    backup(data, tmp_path / "b.tar")
    sides = list(data.glob("state.db-*"))
    assert sides
    assert all((p.stat().st_uid, p.stat().st_gid) == (4321, 4321) for p in sides)
    reader.close()


def test_a_backup_of_a_dir_without_state_is_refused(tmp_path: pathlib.Path) -> None:
    with pytest.raises(BackupError, match="no manager state"):
        backup(tmp_path, tmp_path / "b.tar")
    assert not (tmp_path / "state.db").exists()
