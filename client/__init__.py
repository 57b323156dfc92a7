"""podium.client: the operator side. A typed client library for the Control API and the `podium`
command built on it.

    from podium.client import Client, NotFound

    with Client("127.0.0.1:7070") as podium:
        print([n.description.name for n in podium.nodes()])

The names below are loaded on first use, so that `podium --help` starts without gRPC.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from podium.client._api import (
        AlreadyExists,
        Client,
        Conflict,
        Events,
        InvalidArgument,
        ManagerUnreachable,
        NotFound,
        PodiumError,
        Unavailable,
    )

__all__ = ["AlreadyExists", "Client", "Conflict", "Events", "InvalidArgument",
           "ManagerUnreachable", "NotFound", "PodiumError", "Unavailable"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("podium.client._api"), name)
    raise AttributeError(f"module 'podium.client' has no attribute {name!r}")
