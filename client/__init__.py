"""podium.client: the operator side. A typed client library for the Control API and the `podium`
command built on it.

    from podium.client import Client, NotFound

    with Client("127.0.0.1:7070") as podium:
        print([n.description.name for n in podium.nodes()])

The names below are loaded on first use, so that `podium --help` starts without the API.
The library needs protobuf and hpack, not grpcio: it speaks gRPC itself (podium.client._wire).
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from podium.client._api import (
        AlreadyExists,
        Client,
        Conflict,
        Denied,
        InvalidArgument,
        ManagerUnreachable,
        NotFound,
        PodiumError,
        Stream,
        Unavailable,
    )

DEFAULT_MANAGER = "127.0.0.1:7070"


def default_manager() -> str:
    """The manager's address when none is given: $PODIUM_MANAGER, else 127.0.0.1:7070."""
    return os.environ.get("PODIUM_MANAGER") or DEFAULT_MANAGER


__all__ = [
    "DEFAULT_MANAGER",
    "AlreadyExists",
    "Client",
    "Conflict",
    "Denied",
    "InvalidArgument",
    "ManagerUnreachable",
    "NotFound",
    "PodiumError",
    "Stream",
    "Unavailable",
    "default_manager",
]


_LAZY = frozenset(__all__) - {"DEFAULT_MANAGER", "default_manager"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module("podium.client._api"), name)
    raise AttributeError(f"module 'podium.client' has no attribute {name!r}")
