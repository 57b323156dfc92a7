"""Files the daemons and the CLI write: private ones (keys, tokens, credentials) replaced whole and
readable by their owner only. Free of heavy imports: the CLI loads it on every command."""

from __future__ import annotations

import os
import pathlib


def write_private(path: pathlib.Path, data: bytes) -> None:
    """Replaces `path` with `data`, readable by its owner only (never briefly by others, never
    half written)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
