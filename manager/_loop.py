"""The shape every reconcile loop of the manager shares.

Seed a dirty set from a snapshot, mark ids dirty as changes arrive, reconcile
the dirty ids (idempotently, in one store transaction), repeat. A loop may ask
to be woken at a time (a restart delay ending) with `wake_at()`.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import time

from podium.manager.store import Change, ConflictError, ReadTx, Store

log = logging.getLogger(__name__)


class ReconcileLoop(abc.ABC):
    name = "loop"

    def __init__(self, *, store: Store) -> None:
        self._store = store
        self._dirty: set[str] = set()
        self._wake: float | None = None

    @abc.abstractmethod
    def seed(self, view: ReadTx) -> None:
        """Mark everything that may need work at start-up."""

    @abc.abstractmethod
    def observe(self, change: Change) -> None:
        """Mark what a committed change makes dirty."""

    @abc.abstractmethod
    async def reconcile(self, dirty: set[str]) -> None:
        """Bring the dirty ids to their desired state."""

    def mark(self, id: str) -> None:
        self._dirty.add(id)

    def wake_at(self, when: float) -> None:
        """Reconcile again (with `self.on_wake()` marking) no later than `when`."""
        if self._wake is None or when < self._wake:
            self._wake = when

    def on_wake(self) -> None:  # noqa: B027 (optional hook)
        """Called when a requested wake-up time has come; mark what is due."""

    async def run(self) -> None:
        watch = self._store.watch()
        try:
            self.seed(self._store.view())
            while True:
                if not self._dirty:
                    timeout = None if self._wake is None else max(0.0, self._wake - time.time())
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(timeout):
                            self.observe(await watch.get())
                while (change := watch.get_nowait()) is not None:
                    self.observe(change)
                if self._wake is not None and self._wake <= time.time():
                    self._wake = None
                    self.on_wake()
                if not self._dirty:
                    continue
                dirty, self._dirty = self._dirty, set()
                try:
                    await self.reconcile(dirty)
                except ConflictError:
                    # Someone wrote in between; the change is in the watch queue.
                    self._dirty |= dirty
                except Exception:
                    log.exception("%s: reconcile failed; retrying in 1 s", self.name)
                    self._dirty |= dirty
                    await asyncio.sleep(1)
        finally:
            watch.close()
