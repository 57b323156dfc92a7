"""The dashboard's live event stream: one store watch for every open page.

`EventFeed.run()` reads the store's changes and turns those to nodes, services, tasks and
secrets into event rows (`_views.event_row`): it keeps the last RECENT ones (never a secret's)
for pages that open, and puts each row in the queue of every subscribed page allowed to see it
(a secret's name and version only to operators and admins). A page that falls more than
QUEUE_LIMIT rows behind is ended (it reconnects and reads the state afresh), so a stalled
browser holds a bounded amount of memory.

Changes to identities end, at once, the sessions and streams of a user who was removed or lost
the certificate the session was opened with (the same rule as the API's), and follow a role
that changed.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from podium.manager.dashboard._sessions import Session, SessionBook
from podium.manager.dashboard._views import Row, event_row, node_names
from podium.manager.store import Change, Store
from podium.v1 import objects

RECENT = 200
QUEUE_LIMIT = 5_000
# Roles that see secrets' and configs' names and versions (never their content).
SECRET_ROLES = frozenset({"admin", "operator"})


class Subscription:
    """One open page's queue of event rows."""

    def __init__(self, session: Session, *, sees_secrets: bool, limit: int) -> None:
        self.session = session
        self.sees_secrets = sees_secrets
        self.ended = ""  # why the stream ends ("" while it runs)
        self._items: deque[Row] = deque()
        self._limit = limit
        self._ready = asyncio.Event()

    def put(self, row: Row) -> None:
        if self.ended:
            return
        if len(self._items) >= self._limit:
            self._items.clear()
            self.end(f"this page fell more than {self._limit} events behind")
            return
        self._items.append(row)
        self._ready.set()

    def end(self, reason: str) -> None:
        if not self.ended:
            self.ended = reason
        self._ready.set()

    async def take(self, timeout: float) -> list[Row]:  # noqa: ASYNC109 (a keepalive period)
        """The rows waiting, once there is one (or [] after `timeout` seconds, or once the
        stream ended)."""
        if not self._items and not self.ended:
            self._ready.clear()
            try:
                async with asyncio.timeout(timeout):
                    await self._ready.wait()
            except TimeoutError:
                return []
        rows = list(self._items)
        self._items.clear()
        return rows


class EventFeed:
    def __init__(self, *, store: Store, sessions: SessionBook, recent: int = RECENT,
                 limit: int = QUEUE_LIMIT, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._sessions = sessions
        self._recent: deque[Row] = deque(maxlen=recent)
        self._limit = limit
        self._clock = clock
        self._subscriptions: set[Subscription] = set()
        self._names: dict[str, str] | None = None  # node id -> name, once run() starts

    def subscribe(self, session: Session, *, sees_secrets: bool) -> Subscription:
        subscription = Subscription(session, sees_secrets=sees_secrets, limit=self._limit)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    def recent(self) -> list[Row]:
        """The last events (nodes, services and tasks: never a secret's), oldest first."""
        return list(self._recent)

    def end_session(self, key: str, reason: str) -> None:
        for subscription in list(self._subscriptions):
            if subscription.session.key == key:
                subscription.end(reason)

    async def run(self) -> None:
        watch = self._store.watch()
        self._names = node_names(self._store.view())
        try:
            async for change in watch:
                self.observe(change)
        finally:
            watch.close()
            self.close()

    def close(self) -> None:
        """Ends every stream (the manager stops)."""
        for subscription in list(self._subscriptions):
            subscription.end("the manager is stopping")
        self._subscriptions.clear()

    def observe(self, change: Change) -> None:
        if change.kind == "identity":
            assert isinstance(change.obj, objects.Identity)
            self._identity_changed(change.obj, deleted=change.action == "delete")
            return
        names = self._names if self._names is not None else node_names(self._store.view())
        if isinstance(change.obj, objects.Node):
            if change.action == "delete":
                names.pop(change.obj.id, None)
            else:
                names[change.obj.id] = change.obj.description.name
        row = event_row(change, names, self._clock())
        if row is None:
            return
        private = change.kind == "secret"
        if not private:
            self._recent.append(row)
        for subscription in list(self._subscriptions):
            if subscription.ended:
                self._subscriptions.discard(subscription)
            elif subscription.sees_secrets or not private:
                subscription.put(row)

    def _identity_changed(self, identity: objects.Identity, *, deleted: bool) -> None:
        keep = frozenset() if deleted else frozenset(identity.serials)
        ended = set(self._sessions.end_identity(identity.id, keep))
        for subscription in list(self._subscriptions):
            if subscription.session.grant.identity_id != identity.id:
                continue
            if subscription.session.key in ended:
                subscription.end(f"user {identity.name} was removed or lost the certificate "
                                 "this session was opened with")
            else:
                subscription.sees_secrets = identity.role in SECRET_ROLES
