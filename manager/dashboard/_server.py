"""The dashboard's HTTPS server: the page, its JSON endpoints and its event stream, from an
aiohttp app in the manager's own event loop (reads of memory only: the store's view and the
LoadBook).

TLS with a certificate the cluster CA signs at every start (for MANAGER_NAME, localhost,
127.0.0.1, the manager's names and the dashboard's address); its key never touches the disk
for longer than loading it takes.

Who may look: a user with a session, opened by a login token (`login()`, which
Control.DashboardLogin calls for a caller the API admitted) that the page at /login swaps for a
session cookie (HttpOnly, Secure, SameSite=Strict). Every /api request reads the session's
user from the store: a user removed, or without the certificate the session was opened with,
is refused (401) and its open event streams end at once (`EventFeed`). Viewers do not get
/api/secrets (403), nor secrets' events. Every response forbids caching, framing and scripts
from anywhere but the page itself; the static files name nothing of the cluster.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import logging
import pathlib
import ssl
import tempfile
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from podium.manager.dashboard import _views
from podium.manager.dashboard._feed import SECRET_ROLES, EventFeed
from podium.manager.dashboard._sessions import Grant, Session, SessionBook
from podium.manager.loadbook import HISTORY, LoadBook
from podium.manager.pki import USER_LIFETIME, ClusterCA
from podium.manager.store import Store
from podium.rules import metricsserver
from podium.rules.credentials import MANAGER_NAME
from podium.rules.files import write_private
from podium.v1 import control, objects

log = logging.getLogger(__name__)

COOKIE = "__Host-podium_session"
KEEPALIVE_S = 15.0
MAX_LOGIN_BODY = 4096
DEFAULT_LISTEN = "127.0.0.1:7072"
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # The login link carries its token in the URL: no page may pass it on.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
SIGN_IN = "run `podium dashboard` for a login link"


def _static_files() -> dict[str, bytes]:
    folder = importlib.resources.files(__package__) / "static"
    return {entry.name: entry.read_bytes() for entry in folder.iterdir()
            if pathlib.PurePath(entry.name).suffix in CONTENT_TYPES}


def _refuse(status: type[web.HTTPException], message: str) -> web.HTTPException:
    return status(text=json.dumps({"error": message}), content_type="application/json")


class Dashboard:
    def __init__(self, *, listen: str, store: Store, load: LoadBook, ca: ClusterCA,
                 names: tuple[str, ...] = (),
                 autoscale_view: Callable[[objects.Service], None] | None = None,
                 sessions: SessionBook | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`listen`: HOST:PORT (port 0: any free port; `port` says which once started).
        `names`: more names and addresses for the certificate."""
        address = metricsserver.parse_listen(listen)
        if address is None:
            raise ValueError("Dashboard needs an address, not 'off'")
        self._host, self.port = address
        self._store = store
        self._load = load
        self._ca = ca
        self._names = names
        self._fill = autoscale_view or (lambda service: None)
        self._clock = clock
        self.sessions = sessions or SessionBook(clock=clock)
        self._feed = EventFeed(store=store, sessions=self.sessions)
        self._static = _static_files()
        self._runner: web.AppRunner | None = None

    # -- life ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Binds the address (OSError when it cannot)."""
        app = web.Application(client_max_size=MAX_LOGIN_BODY)
        app.on_response_prepare.append(self._secure_headers)
        add = app.router.add_get
        add("/", self._page("index.html"))
        add("/login", self._page("login.html"))
        add("/static/{name}", self._static_file)
        app.router.add_post("/api/login", self._login)
        app.router.add_post("/api/logout", self._logout)
        add("/api/me", self._me)
        add("/api/nodes", self._json(self._nodes))
        add("/api/services", self._json(self._services))
        add("/api/tasks", self._json(self._tasks))
        add("/api/load", self._json(self._load_series))
        add("/api/secrets", self._json(self._secrets, roles=SECRET_ROLES))
        add("/api/events", self._events)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self.port, ssl_context=self._tls())
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])

    def _tls(self) -> ssl.SSLContext:
        host = self._host if self._host not in ("0.0.0.0", "::", "") else ""
        names = tuple(dict.fromkeys(n for n in (MANAGER_NAME, "localhost", "127.0.0.1",
                                                *self._names, host) if n))
        issued = self._ca.issue("podium-dashboard", "manager", lifetime=USER_LIFETIME,
                                names=names, server=True)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        # load_cert_chain reads files only: the key lives in a private directory for as long
        # as that takes.
        with tempfile.TemporaryDirectory(prefix="podium-dashboard-") as tmp:
            chain, key = pathlib.Path(tmp) / "chain.pem", pathlib.Path(tmp) / "key.pem"
            write_private(key, issued.key)
            chain.write_bytes(issued.certificate + self._ca.pem)
            context.load_cert_chain(chain, key)
        return context

    async def run(self) -> None:
        """Feeds the event streams until cancelled."""
        await self._feed.run()

    async def stop(self) -> None:
        """Ends the open event streams, then the server. Idempotent."""
        self._feed.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @property
    def listen_host(self) -> str:
        """The host it listens on; "" when every address."""
        return "" if self._host in ("0.0.0.0", "::", "") else self._host

    # -- logins ----------------------------------------------------------------------------

    def login(self, identity: objects.Identity, serial: str) -> control.DashboardLoginResponse:
        """A single-use login token for `identity`'s user, who called with the certificate of
        `serial` (checked by the API's admission)."""
        token, expires = self.sessions.issue(Grant(identity.id, identity.name, serial))
        response = control.DashboardLoginResponse(
            token=token, host=self.listen_host, port=self.port, user=identity.name,
            role=identity.role)
        response.expires.FromNanoseconds(int((time.time() + expires - self._clock()) * 1e9))
        return response

    # -- requests --------------------------------------------------------------------------

    @staticmethod
    async def _secure_headers(request: web.Request, response: web.StreamResponse) -> None:
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)

    def _page(self, name: str) -> Callable[[web.Request], Any]:
        async def page(request: web.Request) -> web.Response:
            return web.Response(body=self._static[name], content_type="text/html",
                                charset="utf-8")
        return page

    async def _static_file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = self._static.get(name)
        if body is None:
            raise web.HTTPNotFound(text=f"no file {name!r}")
        return web.Response(body=body, headers={
            "Content-Type": CONTENT_TYPES[pathlib.PurePath(name).suffix]})

    def _who(self, request: web.Request) -> tuple[Session, objects.Identity]:
        """The request's session and its user as the store has it now; 401 otherwise."""
        session_id = request.cookies.get(COOKIE, "")
        session = self.sessions.get(session_id) if session_id else None
        if session is None:
            raise _refuse(web.HTTPUnauthorized, f"not signed in (or the session ended): {SIGN_IN}")
        identity = self._store.view().get_identity(session.grant.identity_id)
        if identity is None or session.grant.serial not in identity.serials:
            self.sessions.end(session.key)
            self._feed.end_session(session.key, "revoked")
            raise _refuse(web.HTTPUnauthorized,
                          f"user {session.grant.user} was removed or lost the certificate this "
                          "session was opened with")
        return session, identity

    def _json(self, build: Callable[[], Any],
              roles: frozenset[str] | None = None) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            _, identity = self._who(request)
            if roles is not None and identity.role not in roles:
                raise _refuse(web.HTTPForbidden,
                              f"user {identity.name} ({identity.role}) may not see this")
            return web.json_response(build())
        return handler

    @staticmethod
    def _same_origin(request: web.Request) -> None:
        """A POST comes from the dashboard's own page: JSON (which a form on another site
        cannot send without the browser asking first), and its Origin, when sent, ours."""
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"https://{request.host}":
            raise _refuse(web.HTTPForbidden, f"origin {origin!r} is not the dashboard's")
        if request.content_type != "application/json":
            raise _refuse(web.HTTPUnsupportedMediaType, "expected application/json")

    async def _login(self, request: web.Request) -> web.Response:
        self._same_origin(request)
        try:
            body = await request.json()
            token = body["token"]
            if not isinstance(token, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            raise _refuse(web.HTTPBadRequest,
                          'expected a JSON object {"token": "..."} from the login link') from None
        opened = self.sessions.redeem(token)
        if opened is None:
            raise _refuse(web.HTTPUnauthorized,
                          f"this login link is unknown, expired or used already: {SIGN_IN}")
        session_id, session = opened
        identity = self._store.view().get_identity(session.grant.identity_id)
        if identity is None or session.grant.serial not in identity.serials:
            self.sessions.end(session.key)
            raise _refuse(web.HTTPUnauthorized, f"user {session.grant.user} was removed")
        log.info("dashboard: %s (%s) signed in from %s", identity.name, identity.role,
                 request.remote)
        response = web.json_response({"user": identity.name, "role": identity.role})
        response.set_cookie(COOKIE, session_id, path="/", secure=True, httponly=True,
                            samesite="Strict", max_age=int(self.sessions.session_ttl))
        return response

    async def _logout(self, request: web.Request) -> web.Response:
        self._same_origin(request)
        session_id = request.cookies.get(COOKIE, "")
        session = self.sessions.get(session_id) if session_id else None
        if session is not None:
            self.sessions.end(session.key)
            self._feed.end_session(session.key, "signed out")
        response = web.json_response({})
        response.del_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="Strict")
        return response

    async def _me(self, request: web.Request) -> web.Response:
        _, identity = self._who(request)
        return web.json_response({"user": identity.name, "role": identity.role,
                                  "secrets": identity.role in SECRET_ROLES})

    # -- what the pages show ----------------------------------------------------------------

    def _reported_ago(self, node_id: str) -> float | None:
        at = self._load.reported_at(node_id)
        return None if at is None else round(max(0.0, time.monotonic() - at), 1)

    def _nodes(self) -> Any:
        return _views.nodes(self._store.view(), self._load.snapshot(), self._reported_ago)

    def _services(self) -> Any:
        return _views.services(self._store.view(), self._fill)

    def _tasks(self) -> Any:
        return _views.tasks(self._store.view(), self._load.snapshot())

    def _load_series(self) -> Any:
        return {"now": time.time(),
                "services": _views.load_series(self._store.view(),
                                               self._load.snapshot(history=HISTORY))}

    def _secrets(self) -> Any:
        return _views.secrets(self._store.view())

    # -- the event stream ---------------------------------------------------------------------

    async def _events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: `hello` (who, and the recent events), then `change` per event,
        a comment every KEEPALIVE_S, and `end` (with why) when the session or the manager
        ends it."""
        session, identity = self._who(request)
        subscription = self._feed.subscribe(session,
                                            sees_secrets=identity.role in SECRET_ROLES)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "X-Accel-Buffering": "no"})
        try:
            await response.prepare(request)
            await response.write(_event("hello", {"user": identity.name, "role": identity.role,
                                                  "recent": self._feed.recent()}))
            while True:
                rows = await subscription.take(KEEPALIVE_S)
                if rows:
                    await response.write(b"".join(_event("change", row) for row in rows))
                elif not subscription.ended:
                    await response.write(b": keepalive\n\n")
                if subscription.ended or not self.sessions.alive(session.key):
                    await response.write(_event("end", {"reason": subscription.ended or
                                                        "the session ended"}))
                    break
        except ConnectionResetError:  # the page went away
            return response
        finally:
            self._feed.unsubscribe(subscription)
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response


def _event(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
