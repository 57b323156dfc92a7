"""Secrets at rest: the key ring and the sealed form of a secret's content.

The key ring is one file, DATA_DIR/keys/secrets.keys (the directory 0700, the file 0600),
holding 256-bit keys by id and which one is current. It is only ever replaced whole: written
to a temporary file created 0600 in the same directory, synced, then renamed over the old
one, so a reader sees the old ring or the new one, never half of one, and the keys are never
readable by others, not even for a moment.

A sealed value is self-describing:

    b"PSV" | format version (1 byte) | key id length (1 byte) | key id (ASCII)
          | nonce (12 bytes) | AES-256-GCM ciphertext and tag

with the object's id as associated data: a sealed value copied onto another secret does not
open. In a stored secret row (SqliteStore) the content is moved out of spec.data into the
row's "sealed" field, so a row says itself whether it is sealed: a row without that field was
written in plaintext (by a manager from before sealing) whatever its content looks like.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import pathlib
import secrets
import stat
from typing import Any

import msgpack
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from podium.manager.store import _codec
from podium.v1 import objects

log = logging.getLogger(__name__)

RING_FILE = "secrets.keys"
_MAGIC = b"PSV"
_FORMAT = 1
_NONCE_BYTES = 12
_KEY_BYTES = 32
# The row field that holds the sealed content (see the module's docstring).
SEALED_FIELD = "sealed"


class SealingError(Exception):
    """A sealed secret cannot be opened (its key is not in the ring, or it was altered), or
    the key ring cannot be read: the manager must not start on it."""


class KeyRing:
    """The keys that seal secrets; `current` seals, any of them opens.

    Open it with KeyRing.open(directory), which makes the directory and a first key when
    there is none. Not thread-safe: the manager uses it from its event loop only."""

    def __init__(self, path: pathlib.Path, current: str, keys: dict[str, bytes]) -> None:
        self.path = path
        self._current = current
        self._keys = dict(keys)

    @classmethod
    def open(cls, directory: pathlib.Path | str) -> KeyRing:
        directory = pathlib.Path(directory)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        _tighten(directory, 0o700)
        path = directory / RING_FILE
        if not path.exists():
            key_id = new_key_id()
            ring = cls(path, key_id, {key_id: AESGCM.generate_key(bit_length=256)})
            ring._write()
            log.info("created the secrets key ring %s (key %s)", path, key_id)
            return ring
        _tighten(path, 0o600)
        return cls._read(path)

    @classmethod
    def _read(cls, path: pathlib.Path) -> KeyRing:
        try:
            doc = json.loads(path.read_text())
            keys = {str(k): base64.b64decode(v, validate=True) for k, v in doc["keys"].items()}
            current = str(doc["current"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError,
                binascii.Error) as err:
            raise SealingError(f"cannot read the secrets key ring {path}: {err}") from None
        if current not in keys or any(len(k) != _KEY_BYTES for k in keys.values()):
            raise SealingError(f"the secrets key ring {path} is malformed: the current key "
                               "is missing or a key is not 256 bits")
        return cls(path, current, keys)

    @property
    def current(self) -> str:
        return self._current

    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    def has(self, key_id: str) -> bool:
        return key_id in self._keys

    def seal(self, data: bytes, object_id: str) -> bytes:
        key_id = self._current.encode("ascii")
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(self._keys[self._current]).encrypt(nonce, data, object_id.encode())
        return _MAGIC + bytes([_FORMAT, len(key_id)]) + key_id + nonce + sealed

    def unseal(self, value: bytes, object_id: str) -> bytes:
        key_id, nonce, sealed = parse(value)
        key = self._keys.get(key_id)
        if key is None:
            raise SealingError(f"secret {object_id} is sealed under key {key_id}, which the key "
                               f"ring {self.path} does not hold: restore that file from the "
                               "backup made with state.db")
        try:
            return AESGCM(key).decrypt(nonce, sealed, object_id.encode())
        except InvalidTag:
            raise SealingError(f"secret {object_id} does not open with key {key_id} of "
                               f"{self.path}: the stored value was altered or belongs to "
                               "another secret") from None

    # Rotation, in the order that keeps a crash at any point harmless (SqliteStore.rotate_key):
    # 1. add_key(): the ring holds the old keys and the new current one, on disk;
    # 2. every row is re-sealed under the new key, in one SQLite transaction;
    # 3. keep_only_current(): the old keys leave the ring.

    def add_key(self) -> str:
        """Makes a new current key and writes the ring (the old keys stay, to open rows)."""
        key_id = new_key_id()
        while key_id in self._keys:
            key_id = new_key_id()
        self._keys[key_id] = AESGCM.generate_key(bit_length=256)
        previous, self._current = self._current, key_id
        try:
            self._write()
        except BaseException:
            del self._keys[key_id]
            self._current = previous
            raise
        return key_id

    def keep_only_current(self) -> list[str]:
        """Drops every key but the current one from the ring; the ids dropped."""
        dropped = [k for k in self._keys if k != self._current]
        if dropped:
            self._keys = {self._current: self._keys[self._current]}
            self._write()
        return dropped

    def _write(self) -> None:
        doc = {
            "format": _FORMAT,
            "current": self._current,
            "keys": {k: base64.b64encode(v).decode("ascii") for k, v in self._keys.items()},
        }
        text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
        temp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.tmp")
        # Created 0600 by open() itself (O_EXCL: never an existing file, nor a symlink).
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, self.path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a crash
        finally:
            os.close(dir_fd)


def new_key_id() -> str:
    return secrets.token_hex(8)


def parse(value: bytes) -> tuple[str, bytes, bytes]:
    """(key id, nonce, ciphertext) of a sealed value; SealingError when it is not one."""
    head = len(_MAGIC) + 2
    if len(value) < head or value[: len(_MAGIC)] != _MAGIC:
        raise SealingError("not a sealed value")
    if value[len(_MAGIC)] != _FORMAT:
        raise SealingError(f"sealed value of unknown format {value[len(_MAGIC)]}")
    id_len = value[len(_MAGIC) + 1]
    key_end = head + id_len
    if len(value) < key_end + _NONCE_BYTES:
        raise SealingError("truncated sealed value")
    key_id = value[head:key_end].decode("ascii", errors="replace")
    return key_id, value[key_end:key_end + _NONCE_BYTES], value[key_end + _NONCE_BYTES:]


def _tighten(path: pathlib.Path, mode: int) -> None:
    current = stat.S_IMODE(path.stat().st_mode)
    if current & ~mode:
        log.warning("%s was mode %o: set to %o (keys must not be readable by others)",
                    path, current, mode)
        path.chmod(mode)


# -- secret rows ---------------------------------------------------------------------------


def encode_sealed(secret: objects.Secret, ring: KeyRing) -> bytes:
    """The stored row of `secret`: its fields as _codec.encode writes them, but spec.data
    moved, sealed, into the "sealed" field."""
    plain = _codec.to_plain(secret)
    data = plain.get("spec", {}).pop("data", b"")
    plain[SEALED_FIELD] = ring.seal(data, secret.id)
    packed: bytes = msgpack.packb(plain, use_bin_type=True)
    return packed


def decode_row(blob: bytes, ring: KeyRing | None) -> tuple[objects.Secret, str | None]:
    """A stored secret row, with its content in the clear, and the id of the key that sealed
    it (None: a plaintext row). SealingError when it cannot be opened."""
    if blob[:1] == _codec.ROW_MARK:  # plaintext, as a store without a key ring writes it
        return _codec.decode(objects.Secret, blob), None
    plain: dict[str, Any] = msgpack.unpackb(blob, raw=False)
    sealed = plain.pop(SEALED_FIELD, None)
    secret = _codec.from_plain(objects.Secret, plain)
    if sealed is None:
        return secret, None
    if ring is None:
        raise SealingError(f"secret {secret.id} is sealed, and the store was opened without "
                           "its key ring")
    key_id, _, _ = parse(sealed)
    secret.spec.data = ring.unseal(sealed, secret.id)
    return secret, key_id
