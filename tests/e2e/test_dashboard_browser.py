"""The dashboard in a real browser (headless Chromium from Debian, driven over the DevTools
protocol: podium.lab.browser) against a manager and two agents on the real engine: sign in
through the link `podium dashboard` prints, every page shows the cluster (a screenshot of each),
a deploy shows up on the open page without a reload (deploy_to_dashboard_s, beside the Control
API's own view of it), and a viewer sees no secret anywhere.

Screenshots go to the test's directory, and also to $PODIUM_SCREENSHOTS when set (the README's
come from `PODIUM_SCREENSHOTS=docs/screenshots pytest -m browser`)."""

from __future__ import annotations

import json
import os
import pathlib
import re
import struct
import time
from typing import Any

import pytest

from podium.lab.browser import WATCH_SERVICES, Chromium, Page, dashboard_pin
from podium.rules.credentials import Credentials
from podium.v1 import objects
from tests.helpers import IMAGE, Cluster, eventually

pytestmark = pytest.mark.browser

SECRET_VALUE = "s3cret-never-shown"
# `api` spins its 0.1 cpus for 8 s, then idles 8 s, over and over (load for the charts and the
# autoscaler); `web` serves.
SPIN = "while true; do sleep 8 & p=$!; while kill -0 $p 2>/dev/null; do :; done; sleep 8; done"
STACK = f"""
services:
  web:
    image: {IMAGE}
    init: true
    stop_grace_period: 2s
    ports: ["80"]
    deploy:
      replicas: 3
  api:
    image: {IMAGE}
    init: true
    stop_grace_period: 2s
    command: ["sh", "-c", "{SPIN}"]
    secrets: [db_password]
    deploy:
      resources:
        limits: {{cpus: "0.1"}}
    x-podium-autoscale:
      min: 1
      max: 3
      cpu: 50%
secrets:
  db_password:
    name: db_password
    file: db_password.txt
"""
LIVE = "document.querySelector('#live') && document.querySelector('#live').textContent === 'live'"
TABS = ("services", "nodes", "tasks", "events", "load", "secrets")


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


async def _shoot(page: Page, name: str, folders: list[pathlib.Path]) -> None:
    data = await page.screenshot(folders[0] / f"{name}.png")
    assert _png_size(data) == (1280, 800)
    for folder in folders[1:]:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.png").write_bytes(data)


async def _visit(page: Page, tab: str, shows: str = "") -> str:
    """Goes to a tab's address, which shows page `shows` (default: the tab's); the visible
    page's text."""
    await page.evaluate(f"location.hash = '#{tab}'")
    await page.wait_for(f"!document.getElementById('page-{shows or tab}').hidden")
    return str(await page.evaluate("document.querySelector('main').innerText"))


def _login_url(cluster: Cluster, credentials: pathlib.Path | None = None) -> str:
    result = cluster.run("dashboard", credentials=credentials)
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip()
    assert re.fullmatch(rf"https://127\.0\.0\.1:{cluster.dashboard_port}/login\?token=[\w-]+",
                        url), url
    return url


@pytest.mark.timeout(300)
async def test_the_dashboard_in_a_browser(cluster: Cluster, tmp_path: pathlib.Path) -> None:
    (tmp_path / "db_password.txt").write_text(SECRET_VALUE)
    (tmp_path / "stack.yaml").write_text(STACK)
    cluster.ok("deploy", "-f", str(tmp_path / "stack.yaml"))
    folders = [tmp_path / "screenshots"]
    if os.environ.get("PODIUM_SCREENSHOTS"):
        folders.append(pathlib.Path(os.environ["PODIUM_SCREENSHOTS"]))
    ca = Credentials.load(cluster.credentials).ca
    pin = await dashboard_pin("127.0.0.1", cluster.dashboard_port, ca)
    origin = f"https://127.0.0.1:{cluster.dashboard_port}"
    async with Chromium(trust=pin) as chromium:
        admin = await chromium.new_page()
        await admin.open(lambda: _login_url(cluster), until=LIVE, timeout=30)
        assert await admin.evaluate("location.href") == f"{origin}/#services"
        assert await admin.evaluate("document.cookie") == ""  # HttpOnly: no script reads it
        assert await admin.evaluate("document.getElementById('user').textContent") == \
            "root (admin)"

        # -- every page, with what it must show ---------------------------------------------
        await admin.wait_for("document.querySelector('[data-replicas=\"web\"]')?.textContent"
                             " === '3/3'", timeout=30)
        # The charts need a few seconds of load reports (the agents report every second); the
        # README's screenshots show most of a minute.
        points = 40 if len(folders) > 1 else 8
        await admin.wait_for(
            "fetch('/api/load').then(r => r.json()).then(l => l.services.some("
            f"s => s.name === 'api' && s.points.length >= {points} && "
            "s.points.some(p => p[1] > 0.02)))", timeout=90, interval=0.5)
        text = await _visit(admin, "services")
        assert "web" in text and "api" in text and "1..3" in text, text
        await _shoot(admin, "services", folders)
        text = await _visit(admin, "nodes")
        await admin.wait_for("document.querySelectorAll('#tbl-nodes tr[data-node]').length === 2"
                             " && !document.querySelector('#tbl-nodes').innerText"
                             ".includes('no report')")
        text = await _visit(admin, "nodes")
        assert "node-a" in text and "node-b" in text and "ready" in text, text
        await _shoot(admin, "nodes", folders)
        text = await _visit(admin, "tasks")
        assert all(f"web.{slot}" in text for slot in (1, 2, 3)), text
        await _shoot(admin, "tasks", folders)
        text = await _visit(admin, "events")
        assert "user:root" in text, text
        await _shoot(admin, "events", folders)
        await _visit(admin, "load")
        await admin.wait_for("!!document.querySelector('[data-chart=\"api\"] polyline.cpu')")
        await _shoot(admin, "load", folders)
        await _visit(admin, "secrets")
        await admin.wait_for("!!document.querySelector('[data-secret=\"db_password\"]')")
        text = await _visit(admin, "secrets")
        assert "db_password" in text and "api" in text and SECRET_VALUE not in text, text
        await _shoot(admin, "secrets", folders)

        # -- a deploy shows up on the open page, without a reload ------------------------------
        await _visit(admin, "services")
        await admin.evaluate("window.__page = 'not reloaded'")
        assert await admin.evaluate(WATCH_SERVICES)
        spec = objects.ServiceSpec(name="late", replicas=2)
        spec.container.image = IMAGE
        spec.container.init = True
        with cluster.client() as client:
            client.create_service(spec)
            returned = time.time()
            eventually(lambda: any(s.spec.name == "late" for s in client.services()),
                       interval=0.005, what="the API lists late")
            api_listed = time.time()
            shown = await admin.wait_for("window.__seen.late", timeout=10) / 1000
            await admin.wait_for("window.__converged.late", timeout=60)
            converged_page = await admin.evaluate("window.__converged.late") / 1000
        assert await admin.evaluate("window.__page") == "not reloaded"
        figures = {"deploy_to_dashboard_s": round(shown - returned, 4),
                   "deploy_to_api_list_s": round(api_listed - returned, 4),
                   "deploy_to_dashboard_running_s": round(converged_page - returned, 3)}
        print(json.dumps(figures))
        assert figures["deploy_to_dashboard_s"] < 2.0, figures

        # -- a viewer -----------------------------------------------------------------------------
        viewer_file = tmp_path / "vic.credentials"
        cluster.ok("user", "add", "vic", "--role", "viewer", "--file", str(viewer_file))
        viewer = await chromium.new_page()
        await viewer.open(lambda: _login_url(cluster, viewer_file), until=LIVE, timeout=30)
        assert await viewer.evaluate("document.getElementById('user').textContent") == \
            "vic (viewer)"
        assert await viewer.evaluate("document.getElementById('secrets-tab').hidden") is True
        assert await viewer.evaluate("fetch('/api/secrets').then(r => r.status)") == 403
        seen: list[Any] = []
        for tab in TABS:  # #secrets shows a viewer the services
            seen.append(await _visit(viewer, tab, "services" if tab == "secrets" else tab))
            seen.append(await viewer.evaluate("document.documentElement.outerHTML"))
        for path in ("/api/services", "/api/tasks", "/api/nodes", "/api/load"):
            seen.append(await viewer.evaluate(f"fetch('{path}').then(r => r.text())"))
        everything = "\n".join(map(str, seen))
        assert "db_password" not in everything and SECRET_VALUE not in everything
        assert "api" in everything  # it did see the service that uses the secret
        await _visit(viewer, "services")
        await _shoot(viewer, "viewer", folders)
        # Removing the user signs the open page out at once, without a reload.
        cluster.ok("user", "rm", "vic")
        reason = await viewer.wait_for(
            "!document.getElementById('signedout').hidden && "
            "document.getElementById('signedout-reason').textContent", timeout=5)
        assert "vic" in reason, reason
        assert await viewer.evaluate("document.getElementById('page-services').hidden")

        # Nothing came from anywhere but the dashboard, and no page had a script error or
        # a refused resource (a Content-Security-Policy violation would be one).
        for page in (admin, viewer):
            assert page.errors == []
            outside = [u for u in page.requests if not u.startswith(f"{origin}/")]
            assert outside == [], outside
    cluster.ok("rm", "web", "api", "late")
