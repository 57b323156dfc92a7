"""Identifiers and timestamps for API objects."""

from __future__ import annotations

import secrets
import time

from google.protobuf.timestamp_pb2 import Timestamp

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_id() -> str:
    """A random 20-character lowercase id (about 103 bits)."""
    # One draw of 103 bits written in base 36 (36**20 > 2**103): a tenth of the time of 20
    # draws, which counts when a burst creates 10,000 tasks at once.
    n = secrets.randbits(103)
    out = []
    for _ in range(20):
        n, digit = divmod(n, 36)
        out.append(_ALPHABET[digit])
    return "".join(out)


def timestamp(seconds: float | None = None) -> Timestamp:
    ts = Timestamp()
    if seconds is None:
        ts.FromNanoseconds(time.time_ns())
    else:
        ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def seconds(ts: Timestamp) -> float:
    return ts.seconds + ts.nanos / 1e9
