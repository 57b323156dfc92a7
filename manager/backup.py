"""A manager's data dir in one archive, and back (`podium manager backup|restore`).

The archive is a tar of: MANIFEST (first, JSON: the format and each member's size, mode and
sha256), state.db (a consistent snapshot taken with SQLite's online backup API, so the manager
may be running and writing: the copy is one read transaction under WAL), and every file of
keys/ (the secrets key ring) and pki/ (the cluster CA, its private key included). It is written
0600, and must be kept like the data dir itself: whoever holds it can read every secret and
sign node and user certificates.

Restore checks the whole archive before anything is visible at the target: members exactly
those of the manifest, names only from the layout above, sizes and digests right, state.db
passing SQLite's integrity check. It unpacks into a fresh directory next to the target and
moves it in place, so a refused or interrupted restore leaves the target as it was. The target
must be missing or empty: a restore never merges into, nor overwrites, a manager's state.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import pathlib
import re
import shutil
import sqlite3
import tarfile
import tempfile
import time

FORMAT = 1
MANIFEST = "MANIFEST"
STATE = "state.db"
KEY_DIRS = ("keys", "pki")
_MEMBER = re.compile(r"^(?:state\.db|(?:keys|pki)/[A-Za-z0-9_][A-Za-z0-9_.-]*)$")
_CHUNK = 1 << 20
# The key ring is read before and after the database snapshot and must be the same both times
# (a key rotation in between could leave rows sealed under a key the copy lacks): so many tries.
_TRIES = 5


class BackupError(Exception):
    """The backup cannot be made, or the archive cannot be restored (and nothing was written)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Member:
    name: str
    size: int
    sha256: str


def backup(data_dir: pathlib.Path | str, archive: pathlib.Path | str) -> list[Member]:
    """Writes `archive` (mode 0600, replaced atomically) from the manager's `data_dir`."""
    data_dir, archive = pathlib.Path(data_dir), pathlib.Path(archive)
    if not (data_dir / STATE).is_file():
        raise BackupError(f"{data_dir} holds no manager state ({STATE} is missing)")
    with tempfile.TemporaryDirectory(prefix="podium-backup-") as tmp:
        snapshot = pathlib.Path(tmp) / STATE
        for _ in range(_TRIES):
            before = _key_files(data_dir)
            _snapshot(data_dir / STATE, snapshot)
            files = _key_files(data_dir)
            if files == before:
                break
            time.sleep(0.1)
        else:
            raise BackupError(f"the key files in {data_dir} kept changing during the backup "
                              "(a key rotation?): try again")
        members: list[tuple[Member, bytes | pathlib.Path]] = [
            (_member_of_file(STATE, snapshot), snapshot)]
        members += [(Member(name, len(data), _digest(data)), data)
                    for name, data in sorted(files.items())]
        _write_archive(archive, members)
    return [m for m, _ in members]


def restore(archive: pathlib.Path | str, data_dir: pathlib.Path | str) -> list[Member]:
    """Unpacks `archive` into `data_dir`, which must be missing or empty: dirs 0700, files
    0600. Raises BackupError, having written nothing at `data_dir`, for an archive that does not
    check out."""
    archive, data_dir = pathlib.Path(archive), pathlib.Path(data_dir)
    if data_dir.exists():
        if not data_dir.is_dir():
            raise BackupError(f"{data_dir} exists and is not a directory")
        if any(data_dir.iterdir()):
            raise BackupError(f"{data_dir} is not empty: restore into a new or empty directory "
                              "(a restore never overwrites a manager's state)")
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{data_dir.name}.restore-",
                                            dir=data_dir.parent))
    try:
        members = _unpack(archive, staging)
        _check_database(staging / STATE)
        if data_dir.exists():
            for entry in staging.iterdir():
                os.replace(entry, data_dir / entry.name)
            staging.rmdir()
            os.chmod(data_dir, 0o700)
        else:
            os.replace(staging, data_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return members


# -- backup --------------------------------------------------------------------------------


def _snapshot(source: pathlib.Path, target: pathlib.Path) -> None:
    target.unlink(missing_ok=True)
    # mode=rw: never create a database that is not there.
    src = sqlite3.connect(f"file:{source}?mode=rw", uri=True, timeout=30)
    try:
        dst = sqlite3.connect(target)
        try:
            # pages=-1: the whole database in one step, i.e. one read transaction of the source.
            src.backup(dst, pages=-1)
        finally:
            dst.close()
    except sqlite3.Error as err:
        raise BackupError(f"cannot snapshot {source}: {err}") from None
    finally:
        src.close()
        _match_owner(source)


def _match_owner(db: pathlib.Path) -> None:
    """Gives the database's -wal and -shm files its owner: a backup run as root next to a
    manager run as its own user must not leave it files it cannot open."""
    owner = db.stat()
    for suffix in ("-wal", "-shm"):
        side = pathlib.Path(f"{db}{suffix}")
        try:
            st = side.stat()
            if (st.st_uid, st.st_gid) != (owner.st_uid, owner.st_gid):
                os.chown(side, owner.st_uid, owner.st_gid)
        except (FileNotFoundError, PermissionError):  # gone, or not ours to give away
            pass


def _key_files(data_dir: pathlib.Path) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for sub in KEY_DIRS:
        directory = data_dir / sub
        if not directory.is_dir():
            raise BackupError(f"{directory} is missing: is {data_dir} a manager's data dir?")
        for path in sorted(directory.iterdir()):
            # Dot files are a writer's temporary files (the key ring is replaced atomically).
            if path.name.startswith(".") or not path.is_file():
                continue
            name = f"{sub}/{path.name}"
            if not _MEMBER.match(name):
                raise BackupError(f"unexpected file {path} in the data dir")
            files[name] = path.read_bytes()
    return files


def _write_archive(archive: pathlib.Path,
                   members: list[tuple[Member, bytes | pathlib.Path]]) -> None:
    manifest = json.dumps({
        "format": FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "members": [dataclasses.asdict(m) for m, _ in members],
    }, indent=2).encode() + b"\n"
    temp = archive.with_name(f".{archive.name}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            with tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar:
                _add(tar, MANIFEST, manifest)
                for member, content in members:
                    _add(tar, member.name, content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, archive)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _add(tar: tarfile.TarFile, name: str, content: bytes | pathlib.Path) -> None:
    info = tarfile.TarInfo(name)
    info.mode = 0o600
    info.mtime = int(time.time())
    if isinstance(content, bytes):
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    else:
        info.size = content.stat().st_size
        with content.open("rb") as f:
            tar.addfile(info, f)


def _member_of_file(name: str, path: pathlib.Path) -> Member:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return Member(name, path.stat().st_size, h.hexdigest())


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- restore -------------------------------------------------------------------------------


def _unpack(archive: pathlib.Path, target: pathlib.Path) -> list[Member]:
    os.chmod(target, 0o700)
    try:
        with tarfile.open(archive, mode="r:") as tar:
            first = tar.next()
            if first is None or first.name != MANIFEST or not first.isfile():
                raise BackupError(f"{archive}: not a Podium backup ({MANIFEST} is not its "
                                  "first member)")
            expected = _read_manifest(archive, tar, first)
            seen: set[str] = set()
            while (info := tar.next()) is not None:
                member = expected.get(info.name)
                if member is None or info.name in seen or not info.isfile():
                    raise BackupError(f"{archive}: member {info.name!r} is not in its manifest")
                seen.add(info.name)
                _extract(archive, tar, info, member, target)
    except (tarfile.TarError, EOFError) as err:
        raise BackupError(f"{archive}: unreadable or cut short ({err})") from None
    except OSError as err:
        raise BackupError(f"{archive}: {err}") from None
    missing = sorted(set(expected) - seen)
    if missing:
        raise BackupError(f"{archive}: incomplete, missing {', '.join(missing)}")
    return list(expected.values())


def _read_manifest(archive: pathlib.Path, tar: tarfile.TarFile,
                   info: tarfile.TarInfo) -> dict[str, Member]:
    f = tar.extractfile(info)
    assert f is not None  # a regular file
    try:
        doc = json.loads(f.read(1 << 20))
        if doc["format"] != FORMAT:
            raise BackupError(f"{archive}: backup format {doc['format']!r}, this version "
                              f"reads {FORMAT}")
        members = [Member(str(m["name"]), int(m["size"]), str(m["sha256"]))
                   for m in doc["members"]]
    except (ValueError, KeyError, TypeError) as err:
        raise BackupError(f"{archive}: its manifest is malformed ({err})") from None
    names = {m.name for m in members}
    bad = [m.name for m in members if not _MEMBER.match(m.name)]
    if bad or len(names) != len(members) or STATE not in names:
        raise BackupError(f"{archive}: its manifest lists unexpected members "
                          f"{bad or sorted(names)}")
    if not any(n.startswith("pki/") for n in names) or \
            not any(n.startswith("keys/") for n in names):
        raise BackupError(f"{archive}: its manifest lacks the CA (pki/) or the keys (keys/)")
    return {m.name: m for m in members}


def _extract(archive: pathlib.Path, tar: tarfile.TarFile, info: tarfile.TarInfo,
             member: Member, target: pathlib.Path) -> None:
    source = tar.extractfile(info)
    assert source is not None
    path = target / member.name
    path.parent.mkdir(mode=0o700, exist_ok=True)
    os.chmod(path.parent, 0o700)
    h = hashlib.sha256()
    size = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        while chunk := source.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    if size != member.size or h.hexdigest() != member.sha256:
        raise BackupError(f"{archive}: member {member.name} is corrupt (its sha256 or size "
                          "differs from the manifest's)")


def _check_database(path: pathlib.Path) -> None:
    try:
        db = sqlite3.connect(f"file:{path}?mode=rw", uri=True)
        try:
            (result,) = db.execute("PRAGMA integrity_check").fetchone()
        finally:
            db.close()
    except sqlite3.Error as err:
        raise BackupError(f"the archive's {STATE} is not a usable database: {err}") from None
    if result != "ok":
        raise BackupError(f"the archive's {STATE} fails SQLite's integrity check: {result}")
    # The check may leave a -wal or -shm beside it; the manager makes its own.
    for suffix in ("-wal", "-shm"):
        pathlib.Path(f"{path}{suffix}").unlink(missing_ok=True)


__all__ = ["BackupError", "Member", "backup", "restore"]
