"""The dashboard's logins, sessions, roles and JSON endpoints, on a secured in-process cluster
(a real manager over mutual TLS, agents on fake executors): Control.DashboardLogin, the HTTPS
server with the cluster CA's certificate, the cookie, revocation, and what each role sees. No
browser: the browser lane (tests/e2e/test_dashboard_browser.py) drives the page itself."""

from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib
import re
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
import pytest

from podium.lab.local import secure_channel
from podium.manager.dashboard._server import COOKIE
from podium.manager.manager import Manager
from podium.rules.credentials import Credentials
from podium.v1 import control, control_grpc, objects
from tests.helpers import PODIUM, eventually_async
from tests.inprocess import InProcessCluster, in_process_cluster

SECRET_VALUE = b"hunter2-do-not-show"


@pytest.fixture
async def secured(tmp_path: pathlib.Path) -> AsyncIterator[InProcessCluster]:
    async with in_process_cluster(tmp_path, agents=2, plaintext=False,
                                  dashboard_listen="127.0.0.1:0") as cluster:
        yield cluster


def _tls(cluster: InProcessCluster) -> ssl.SSLContext:
    """Trusts the cluster CA only, and checks the name: the dashboard's certificate must be
    the CA's, for 127.0.0.1."""
    return ssl.create_default_context(cadata=Credentials.load(cluster.credentials).ca.decode())


def _base(cluster: InProcessCluster) -> str:
    assert cluster.manager is not None and cluster.manager.dashboard is not None
    return f"https://127.0.0.1:{cluster.manager.dashboard.port}"


class Browser:
    """An HTTPS client of the dashboard that keeps its session cookie by hand (aiohttp's jar
    refuses cookies of IP addresses) and says what came back."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base
        self.cookie = ""
        self.set_cookie = ""

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Cookie": f"{COOKIE}={self.cookie}"} if self.cookie else {}
        return headers | (extra or {})

    async def login(self, token: str, *, expect: int = 200) -> Any:
        async with self.http.post(f"{self.base}/api/login", json={"token": token},
                                  headers={"Origin": self.base}) as reply:
            body = await reply.json()
            assert reply.status == expect, body
            if reply.status == 200:
                self.set_cookie = reply.headers["Set-Cookie"]
                self.cookie = reply.cookies[COOKIE].value
            return body

    async def get(self, path: str, *, expect: int = 200) -> Any:
        async with self.http.get(f"{self.base}{path}", headers=self._headers()) as reply:
            body = await reply.json()
            assert reply.status == expect, (path, reply.status, body)
            return body

    @contextlib.asynccontextmanager
    async def events(self) -> AsyncIterator[EventReader]:
        async with self.http.get(f"{self.base}/api/events", headers=self._headers()) as reply:
            assert reply.status == 200, await reply.text()
            assert reply.content_type == "text/event-stream"
            yield EventReader(reply)


class EventReader:
    def __init__(self, reply: aiohttp.ClientResponse) -> None:
        self._reply = reply

    async def next(self, timeout: float = 5.0) -> tuple[str, Any]:  # noqa: ASYNC109
        """The next event's name and data (keepalive comments skipped)."""
        name, data = "", ""
        async with asyncio.timeout(timeout):
            while True:
                line = (await self._reply.content.readline()).decode()
                if not line:
                    return "eof", None
                line = line.rstrip("\n")
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    data = line[6:]
                elif not line and name:
                    return name, json.loads(data)

    async def until(self, want: Any, timeout: float = 5.0) -> list[tuple[str, Any]]:  # noqa: ASYNC109
        """Events up to and including the first for which `want(name, data)` holds."""
        seen = []
        async with asyncio.timeout(timeout):
            while True:
                name, data = await self.next(timeout)
                seen.append((name, data))
                if want(name, data):
                    return seen
                assert name != "eof", seen


@contextlib.asynccontextmanager
async def browser(cluster: InProcessCluster) -> AsyncIterator[Browser]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(),
                                     connector=aiohttp.TCPConnector(ssl=_tls(cluster))) as http:
        yield Browser(http, _base(cluster))


async def _login_as(cluster: InProcessCluster, stub: control_grpc.ControlStub,
                    session: Browser) -> control.DashboardLoginResponse:
    grant = await stub.DashboardLogin(control.DashboardLoginRequest())
    await session.login(grant.token)
    return grant


@contextlib.asynccontextmanager
async def user(cluster: InProcessCluster, name: str, role: str,
               ) -> AsyncIterator[control_grpc.ControlStub]:
    """A Control stub with the credentials of a new user `name` with `role`."""
    added = await cluster.api.AddUser(control.AddUserRequest(name=name, role=role))
    path = cluster.root / f"{name}.credentials"
    Credentials(cluster.address, name, role, added.ca, added.certificate, added.key).save(path)
    channel = secure_channel(cluster.address, path)
    try:
        yield control_grpc.ControlStub(channel)
    finally:
        await channel.close()


# -- logins and sessions ---------------------------------------------------------------------

@pytest.mark.timeout(30)
async def test_a_login_token_signs_in_once_with_a_strict_cookie(secured: InProcessCluster) -> None:
    grant = await secured.api.DashboardLogin(control.DashboardLoginRequest())
    assert (grant.user, grant.role, grant.host) == ("root", "admin", "127.0.0.1")
    assert secured.manager is not None and secured.manager.dashboard is not None
    assert grant.port == secured.manager.dashboard.port
    left = grant.expires.ToNanoseconds() / 1e9 - time.time()
    assert 30 < left <= 61, left
    async with browser(secured) as page:
        async with page.http.get(f"{page.base}/login?token={grant.token}") as reply:
            assert reply.status == 200
            assert "/static/login.js" in await reply.text()
        await page.get("/api/me", expect=401)
        assert await page.login(grant.token) == {"user": "root", "role": "admin"}
        attributes = {a.strip().split("=")[0].lower() for a in page.set_cookie.split(";")}
        assert {"httponly", "secure", "samesite", "path"} <= attributes, page.set_cookie
        assert "samesite=strict" in page.set_cookie.lower().replace(" ", "")
        assert page.set_cookie.startswith(f"{COOKIE}=")
        assert await page.get("/api/me") == {"user": "root", "role": "admin", "secrets": True}
        nodes = await page.get("/api/nodes")
        assert [(n["name"], n["state"]) for n in nodes] == [("node-a", "ready"),
                                                           ("node-b", "ready")]
        # Single use: the same token again opens nothing.
        other = Browser(page.http, page.base)
        body = await other.login(grant.token, expect=401)
        assert "used already" in body["error"]
        await other.get("/api/nodes", expect=401)
        # A made-up session id is no session.
        other.cookie = "x" * 43
        await other.get("/api/nodes", expect=401)


@pytest.mark.timeout(30)
async def test_posts_must_be_json_from_the_dashboards_own_origin(secured: InProcessCluster) -> None:
    grant = await secured.api.DashboardLogin(control.DashboardLoginRequest())
    async with browser(secured) as page:
        async with page.http.post(f"{page.base}/api/login", data={"token": grant.token}) as reply:
            assert reply.status == 415  # a form post, as another site could send
        async with page.http.post(f"{page.base}/api/login", json={"token": grant.token},
                                  headers={"Origin": "https://evil.example"}) as reply:
            assert reply.status == 403
            assert "evil.example" in (await reply.json())["error"]
        async with page.http.post(f"{page.base}/api/login", json=["not", "an", "object"],
                                  ) as reply:
            assert reply.status == 400
            assert '{"token"' in (await reply.json())["error"]
        # Refused attempts did not use the token up.
        await page.login(grant.token)
        async with page.http.post(f"{page.base}/api/logout", json={},
                                  headers=page._headers({"Origin": page.base})) as reply:
            assert reply.status == 200
        await page.get("/api/me", expect=401)


@pytest.mark.timeout(30)
async def test_every_response_forbids_caching_framing_and_foreign_scripts(
        secured: InProcessCluster) -> None:
    async with browser(secured) as page:
        for path, status in (("/", 200), ("/static/app.js", 200), ("/api/nodes", 401),
                             ("/static/nothing.js", 404)):
            async with page.http.get(f"{page.base}{path}") as reply:
                assert reply.status == status, path
                headers = reply.headers
                assert "script-src 'self'" in headers["Content-Security-Policy"], path
                assert "frame-ancestors 'none'" in headers["Content-Security-Policy"], path
                assert headers["Cache-Control"] == "no-store", path
                assert headers["Referrer-Policy"] == "no-referrer", path
                assert headers["X-Content-Type-Options"] == "nosniff", path


def test_the_page_fetches_nothing_from_elsewhere() -> None:
    """Every src and href is a path on the dashboard itself; the scripts name no other
    address (the SVG namespace is a name, not a fetch)."""
    folder = pathlib.Path(__file__).resolve().parents[2] / "manager" / "dashboard" / "static"
    files = sorted(folder.iterdir())
    assert {f.name for f in files} >= {"index.html", "login.html", "app.js", "app.css"}
    for path in files:
        text = path.read_text()
        for link in re.findall(r'(?:src|href)="([^"]*)"', text):
            assert link.startswith(("/", "#")), (path.name, link)
        urls = set(re.findall(r"[a-z]+://[^\s\"'`)]+", text)) - {"http://www.w3.org/2000/svg"}
        assert not urls, (path.name, urls)
        assert "@import" not in text and "url(" not in text, path.name


@pytest.mark.timeout(30)
async def test_the_dashboard_speaks_https_with_the_cluster_cas_certificate_only(
        secured: InProcessCluster) -> None:
    async with aiohttp.ClientSession() as http:
        # The system's trust store does not know the cluster CA.
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with http.get(f"{_base(secured)}/"):
                pass
        # Nor does it answer plaintext.
        plain = _base(secured).replace("https://", "http://")
        with pytest.raises(aiohttp.ClientError):
            async with http.get(f"{plain}/"):
                pass


# -- revocation and roles --------------------------------------------------------------------

@pytest.mark.timeout(30)
async def test_removing_a_user_ends_its_session_and_stream_at_once(
        secured: InProcessCluster) -> None:
    async with user(secured, "olga", "operator") as olga, browser(secured) as page:
        grant = await _login_as(secured, olga, page)
        assert (grant.user, grant.role) == ("olga", "operator")
        assert (await page.get("/api/me"))["role"] == "operator"
        async with page.events() as stream:
            name, hello = await stream.next()
            assert name == "hello" and hello["user"] == "olga"
            await secured.api.RemoveUser(control.RemoveUserRequest(name="olga"))
            seen = await stream.until(lambda n, d: n in ("end", "eof"), timeout=2)
            assert seen[-1][0] == "end", seen
            assert "olga" in seen[-1][1]["reason"]
        body = await page.get("/api/services", expect=401)
        assert "not signed in" in body["error"] or "olga" in body["error"]
        # Her certificate no longer gets a token either.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await olga.DashboardLogin(control.DashboardLoginRequest())
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.timeout(40)
async def test_a_viewer_sees_no_secret_anywhere(secured: InProcessCluster) -> None:
    secret = await secured.api.CreateSecret(control.CreateSecretRequest(spec=objects.SecretSpec(
        kind=objects.SecretSpec.KIND_SECRET, name="db_password", data=SECRET_VALUE)))
    spec = objects.ServiceSpec(name="db", replicas=1)
    spec.container.image = "app:1"
    spec.container.secrets.add(id=secret.secret.id, name="db_password")
    await secured.api.CreateService(control.CreateServiceRequest(spec=spec))
    await secured.wait_running("db", 1)
    async with user(secured, "vic", "viewer") as vic, browser(secured) as viewer, \
            browser(secured) as admin:
        await _login_as(secured, vic, viewer)
        await _login_as(secured, secured.api, admin)
        assert await viewer.get("/api/me") == {"user": "vic", "role": "viewer",
                                               "secrets": False}
        refused = await viewer.get("/api/secrets", expect=403)
        assert "viewer" in refused["error"]
        listed = await admin.get("/api/secrets")
        assert [(s["name"], s["kind"], [v["version"] for v in s["versions"]], s["used_by"])
                for s in listed] == [("db_password", "secret", [1], ["db"])]
        assert SECRET_VALUE.decode() not in json.dumps(listed)
        assert "sha256" not in json.dumps(listed)  # not even the content's digest
        for path in ("/api/nodes", "/api/services", "/api/tasks", "/api/load"):
            text = json.dumps(await viewer.get(path))
            assert "db_password" not in text and SECRET_VALUE.decode() not in text, path
        async with viewer.events() as seen_by_viewer, admin.events() as seen_by_admin:
            for stream in (seen_by_viewer, seen_by_admin):
                name, hello = await stream.next()
                assert name == "hello"
                assert "db_password" not in json.dumps(hello)
            await secured.api.CreateSecret(control.CreateSecretRequest(spec=objects.SecretSpec(
                kind=objects.SecretSpec.KIND_SECRET, name="db_password", data=b"v2-value")))
            await secured.create("after", replicas=1)
            admin_saw = await seen_by_admin.until(
                lambda n, d: n == "change" and d["name"] == "after")
            viewer_saw = await seen_by_viewer.until(
                lambda n, d: n == "change" and d["name"] == "after")
        assert ("secret", "db_password", "version 2") in [
            (d["kind"], d["name"], d["text"]) for _, d in admin_saw]
        assert "db_password" not in json.dumps(viewer_saw)
        assert "v2-value" not in json.dumps(admin_saw)


@pytest.mark.timeout(40)
async def test_the_endpoints_show_services_tasks_and_their_changes_live(
        secured: InProcessCluster) -> None:
    async with browser(secured) as page:
        await _login_as(secured, secured.api, page)
        async with page.events() as stream:
            name, _ = await stream.next()
            assert name == "hello"
            await secured.create("web", replicas=3)
            seen = await stream.until(lambda n, d: n == "change" and d["kind"] == "task"
                                      and d["text"].startswith("running"))
            assert ("service", "web", "create", "user:root") in [
                (d["kind"], d["name"], d["action"], d["actor"]) for _, d in seen]
        await secured.wait_running("web", 3)
        services = await page.get("/api/services")
        assert [(s["name"], s["running"], s["desired"], s["mode"], s["autoscale"])
                for s in services] == [("web", 3, 3, "replicated", None)]
        assert services[0]["update"]["state"] == "none"
        tasks = [t for t in await page.get("/api/tasks") if t["live"]]
        assert sorted(t["name"] for t in tasks) == ["web.1", "web.2", "web.3"]
        assert {t["state"] for t in tasks} == {"running"}
        assert {t["node"] for t in tasks} == {"node-a", "node-b"}
        assert all(t["restarts"] == 0 and t["health"] == "none" for t in tasks)
        nodes = {n["name"]: n for n in await page.get("/api/nodes")}
        assert nodes["node-a"]["tasks"] + nodes["node-b"]["tasks"] == 3
        # Load figures arrive with the agents' reports: each node's host totals.
        nodes = await eventually_async(_loaded(page), what="node load reported")
        assert all(n["cpu_total"] > 0 and n["memory_total"] > 0 for n in nodes)


def _loaded(page: Browser) -> Any:
    async def check() -> Any:
        nodes = await page.get("/api/nodes")
        return nodes if all(n["memory_total"] for n in nodes) else None
    return check


# -- the manager's side ----------------------------------------------------------------------

@pytest.mark.timeout(30)
async def test_a_manager_without_a_dashboard_says_so(tmp_path: pathlib.Path) -> None:
    async with in_process_cluster(tmp_path, agents=0, plaintext=False) as cluster:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await cluster.api.DashboardLogin(control.DashboardLoginRequest())
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "--dashboard" in (refused.value.details() or "")


def test_a_plaintext_manager_cannot_serve_the_dashboard(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="TLS"):
        Manager(listen="127.0.0.1:0", data_dir=tmp_path, plaintext=True,
                dashboard_listen="127.0.0.1:0")
    with pytest.raises(ValueError, match="HOST:PORT or 'off'"):
        Manager(listen="127.0.0.1:0", data_dir=tmp_path, dashboard_listen="7072")


@pytest.mark.timeout(30)
async def test_a_taken_address_leaves_the_manager_running_without_a_dashboard(
        tmp_path: pathlib.Path) -> None:
    with contextlib.closing(socket.socket()) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with in_process_cluster(tmp_path, agents=0, plaintext=False,
                                      dashboard_listen=f"127.0.0.1:{port}") as cluster:
            assert cluster.manager is not None and cluster.manager.dashboard is None
            nodes = await cluster.api.ListNodes(control.ListNodesRequest())
            assert list(nodes.nodes) == []


@pytest.mark.timeout(60)
async def test_podium_dashboard_prints_a_link_that_signs_in(secured: InProcessCluster) -> None:
    result = await asyncio.to_thread(
        subprocess.run, [*PODIUM, "--manager", secured.address, "--credentials",
                         str(secured.credentials), "dashboard"],
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip()
    found = re.fullmatch(r"https://127\.0\.0\.1:(\d+)/login\?token=([\w-]+)", url)
    assert found, url
    assert int(found[1]) == int(_base(secured).rsplit(":", 1)[1])
    assert "root (admin)" in result.stderr and "within" in result.stderr
    async with browser(secured) as page:
        await page.login(found[2])
        assert (await page.get("/api/me"))["user"] == "root"


def test_the_cli_parses_dashboard() -> None:
    from podium.client.cli import build_parser

    args = build_parser().parse_args(["dashboard", "--open"])
    assert (args.client, args.open) == ("dashboard", True)
    bad = subprocess.run([sys.executable, "-m", "podium.manager", "--dashboard", "nowhere",
                          "--data-dir", "/nonexistent"], capture_output=True, text=True,
                         timeout=30)
    assert bad.returncode == 2
    assert "--dashboard: expected HOST:PORT or 'off', not 'nowhere'" in bad.stderr


@pytest.mark.timeout(30)
async def test_stopping_the_manager_ends_open_streams(secured: InProcessCluster) -> None:
    async with browser(secured) as page:
        await _login_as(secured, secured.api, page)
        async with page.events() as stream:
            assert (await stream.next())[0] == "hello"
            loop = asyncio.get_running_loop()
            started = loop.time()
            await secured.stop_manager()
            assert loop.time() - started < 3  # not held by the open stream
            seen = await stream.until(lambda n, d: n in ("end", "eof"), timeout=2)
            assert seen[-1] in (("end", {"reason": "the manager is stopping"}), ("eof", None))
