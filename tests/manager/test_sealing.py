"""Secrets at rest: the store writes a secret's content sealed, reads it back with the key ring,
seals what an older manager wrote in plaintext, rotates its key, and refuses a row whose key
is not in the ring (or that was moved onto another secret)."""

from __future__ import annotations

import json
import pathlib
import sqlite3
import stat

import msgpack
import pytest

from podium.manager import secrets
from podium.manager.store import KeyRing, SealingError, SqliteStore
from podium.v1 import objects

SECRET = objects.SecretSpec.KIND_SECRET
CONFIG = objects.SecretSpec.KIND_CONFIG
PLAIN = b"plaintext-marker-7c1e9d"  # distinctive: found in the file only if stored in clear


def _open(tmp_path: pathlib.Path) -> SqliteStore:
    return SqliteStore(tmp_path / "state.db", sealer=KeyRing.open(tmp_path / "keys"))


def _create(store: SqliteStore, name: str, data: bytes, kind: int = SECRET) -> objects.Secret:
    spec = objects.SecretSpec(kind=kind, name=name, data=data)  # type: ignore[arg-type]
    return store.update_now(lambda tx: secrets.create(tx, spec))


def _db_bytes(tmp_path: pathlib.Path) -> bytes:
    """state.db and its write-ahead log, as a copy of the files would hold them."""
    return b"".join(p.read_bytes() for p in tmp_path.glob("state.db*"))


def _row(tmp_path: pathlib.Path, id: str) -> bytes:
    with sqlite3.connect(tmp_path / "state.db") as db:
        (blob,) = db.execute("SELECT data FROM objects WHERE kind='secret' AND id=?",
                             (id,)).fetchone()
    db.close()
    return bytes(blob)


def _ring(tmp_path: pathlib.Path) -> dict[str, object]:
    doc: dict[str, object] = json.loads((tmp_path / "keys" / "secrets.keys").read_text())
    return doc


def test_the_files_hold_no_plaintext_and_a_new_store_reads_it_back(
        tmp_path: pathlib.Path) -> None:
    store = _open(tmp_path)
    made = _create(store, "pw", PLAIN)
    conf = _create(store, "app", PLAIN + b"-config", CONFIG)
    # In memory the content stays in the clear: nothing else in the manager changes.
    assert store.view().get_secret(made.id).spec.data == PLAIN  # type: ignore[union-attr]
    store.close()
    assert PLAIN not in _db_bytes(tmp_path)
    again = _open(tmp_path)
    try:
        assert again.view().get_secret(made.id).spec.data == PLAIN  # type: ignore[union-attr]
        assert again.view().get_secret(conf.id).spec.data == PLAIN + b"-config"  # type: ignore[union-attr]
    finally:
        again.close()


def test_the_key_ring_is_private(tmp_path: pathlib.Path) -> None:
    KeyRing.open(tmp_path / "keys")
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "keys" / "secrets.keys").stat().st_mode) == 0o600
    assert [p.name for p in (tmp_path / "keys").iterdir()] == ["secrets.keys"]  # no temp left


def test_rotation_reseals_under_a_new_key_and_drops_the_old(tmp_path: pathlib.Path) -> None:
    store = _open(tmp_path)
    made = [_create(store, f"s{i}", PLAIN + bytes([48 + i])) for i in range(3)]
    old_key = _ring(tmp_path)["current"]
    before = {s.id: _row(tmp_path, s.id) for s in made}
    key_id, count = store.rotate_key()
    assert (key_id, count) == (_ring(tmp_path)["current"], 3) and key_id != old_key
    assert list(_ring(tmp_path)["keys"]) == [key_id]  # type: ignore[call-overload]
    assert stat.S_IMODE((tmp_path / "keys" / "secrets.keys").stat().st_mode) == 0o600
    after = {s.id: _row(tmp_path, s.id) for s in made}
    assert all(after[id] != before[id] for id in before)
    assert all(key_id.encode() in row and str(old_key).encode() not in row
               for row in after.values())
    # Still readable in memory, by a new write, and after reopening.
    extra = _create(store, "later", b"written-after-rotation")
    store.close()
    assert PLAIN not in _db_bytes(tmp_path)
    again = _open(tmp_path)
    try:
        for i, s in enumerate(made):
            assert again.view().get_secret(s.id).spec.data == PLAIN + bytes([48 + i])  # type: ignore[union-attr]
        assert again.view().get_secret(extra.id).spec.data == b"written-after-rotation"  # type: ignore[union-attr]
    finally:
        again.close()


def test_a_plaintext_row_of_an_older_manager_is_sealed_at_open(tmp_path: pathlib.Path) -> None:
    legacy = SqliteStore(tmp_path / "state.db")  # no sealer: how an older manager wrote
    made = _create(legacy, "old", PLAIN)
    legacy.close()
    assert PLAIN in _db_bytes(tmp_path)
    store = _open(tmp_path)
    try:
        assert store.view().get_secret(made.id).spec.data == PLAIN  # type: ignore[union-attr]
        assert PLAIN not in _db_bytes(tmp_path)  # neither in the file nor in its log
        assert b"sealed" in _row(tmp_path, made.id)
    finally:
        store.close()


def test_a_missing_key_refuses_to_open_naming_the_key_and_the_file(
        tmp_path: pathlib.Path) -> None:
    store = _open(tmp_path)
    made = _create(store, "pw", PLAIN)
    store.close()
    lost = _ring(tmp_path)["current"]
    (tmp_path / "keys" / "secrets.keys").unlink()  # a fresh ring: a new key, not the lost one
    row = _row(tmp_path, made.id)
    with pytest.raises(SealingError) as err:
        _open(tmp_path)
    assert str(lost) in str(err.value)
    assert str(tmp_path / "keys" / "secrets.keys") in str(err.value)
    assert _row(tmp_path, made.id) == row  # never overwritten


def test_a_sealed_value_moved_to_another_id_does_not_open(tmp_path: pathlib.Path) -> None:
    store = _open(tmp_path)
    a = _create(store, "a", PLAIN)
    b = _create(store, "b", b"other content")
    store.close()
    # Give b's row a's sealed content (b keeps its own id).
    sealed_a = msgpack.unpackb(_row(tmp_path, a.id))["sealed"]
    plain_b = msgpack.unpackb(_row(tmp_path, b.id))
    plain_b["sealed"] = sealed_a
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute("UPDATE objects SET data=? WHERE kind='secret' AND id=?",
                   (msgpack.packb(plain_b, use_bin_type=True), b.id))
    db.close()
    with pytest.raises(SealingError, match=b.id):
        _open(tmp_path)


def test_a_sealed_store_opened_without_a_ring_refuses(tmp_path: pathlib.Path) -> None:
    store = _open(tmp_path)
    _create(store, "pw", PLAIN)
    store.close()
    with pytest.raises(SealingError, match="without its key ring"):
        SqliteStore(tmp_path / "state.db")


async def test_the_manager_refuses_to_start_without_the_key(tmp_path: pathlib.Path) -> None:
    from podium.manager.manager import Manager

    async with Manager(listen="127.0.0.1:0", data_dir=tmp_path):
        pass
    assert (tmp_path / "keys" / "secrets.keys").exists()  # made on first start
    store = _open(tmp_path)
    _create(store, "pw", PLAIN)
    store.close()
    (tmp_path / "keys" / "secrets.keys").unlink()
    manager = Manager(listen="127.0.0.1:0", data_dir=tmp_path)
    with pytest.raises(SealingError, match=r"secrets\.keys"):
        await manager.start()
    await manager.stop()
