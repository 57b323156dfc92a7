"""Headless Chromium driven over the DevTools protocol, for the dashboard's browser tests and
its benchmark, with nothing but aiohttp (a websocket and a few JSON messages).

    async with Chromium(trust=pin) as chromium:
        page = await chromium.new_page()          # its own cookies (a browser context)
        await page.open(login_url, until="document.querySelector('#live.live:not(.off)')")
        await page.screenshot(path)

`Chromium` starts Debian's `chromium` (deploy/bootstrap.sh installs it) headless in a new
profile directory, with its background traffic off (no updates, sync, field trials or QUIC).
The dashboard's certificate is the cluster CA's, which the browser does not know: `trust`
names the public key the browser accepts it for (`--ignore-certificate-errors-spki-list`,
which Chromium honours with a profile directory only); `dashboard_pin()` reads that key from
the dashboard after checking its certificate against the cluster CA.

A `Page` records what a test wants to know happened: every request's URL (`requests`), script
exceptions and console errors, Content-Security-Policy violations included (`errors`), and the
loads Chromium aborted because the host's network changed (`network_changes`). The engine adds
and removes a veth per container, and Chromium aborts what is in flight when it sees one go,
even on 127.0.0.1: `open()` navigates again, and `wait_for()` polls again after a fetch that it
cut short.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import os
import pathlib
import shutil
import signal
import ssl
import subprocess
import tempfile
from collections.abc import Callable
from types import TracebackType
from typing import Any

import aiohttp

# Navigations tried when Chromium aborts one, or a load of its page, because the host's network
# changed (a container's veth came or went: net::ERR_NETWORK_CHANGED).
NAVIGATE_ATTEMPTS = 3
NETWORK_CHANGED = "net::ERR_NETWORK_CHANGED"
# How often open() looks whether such an abort left the page it waits for unfinished.
RECHECK_S = 2.0

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--no-default-browser-check",
    "--no-proxy-server", "--hide-scrollbars", "--force-device-scale-factor=1",
    "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
)
WIDTH, HEIGHT = 1280, 800


# What DevTools answers to an evaluation whose page or JavaScript context a navigation replaced.
NAVIGATED = ("Inspected target navigated or closed", "Cannot find context with specified id",
             "Execution context was destroyed")


class BrowserError(Exception):
    """Chromium did not start, or a DevTools call failed; the message says which."""


def binary() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise BrowserError("no chromium on PATH: deploy/bootstrap.sh installs Debian's "
                           "(apt-get install chromium)")
    return found


def spki_pin(der: bytes) -> str:
    """base64 SHA-256 of a certificate's public key, as --ignore-certificate-errors-spki-list
    takes it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    key = x509.load_der_x509_certificate(der).public_key()
    spki = key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


async def dashboard_pin(host: str, port: int, ca_pem: bytes) -> str:
    """The pin of the dashboard's certificate at host:port, once it checked out against the
    cluster CA `ca_pem` for that host (ssl.SSLError otherwise)."""
    context = ssl.create_default_context(cadata=ca_pem.decode())
    async with asyncio.timeout(10):
        _, writer = await asyncio.open_connection(host, port, ssl=context,
                                                  server_hostname=host)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    assert der is not None
    return spki_pin(der)


class Page:
    """One tab, spoken to over its DevTools websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._calls: dict[int, asyncio.Future[Any]] = {}
        self._waits: list[tuple[str, asyncio.Future[Any]]] = []
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.network_changes = 0
        self._reader = asyncio.create_task(self._read(), name="devtools-page")

    async def _read(self) -> None:
        try:
            async for message in self._ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(message.data)
                if "id" in data:
                    future = self._calls.pop(data["id"], None)
                    if future is not None and not future.done():
                        if "error" in data:
                            future.set_exception(BrowserError(str(data["error"])))
                        else:
                            future.set_result(data.get("result", {}))
                else:
                    self._event(data.get("method", ""), data.get("params", {}))
        finally:
            for future in [*self._calls.values(), *(f for _, f in self._waits)]:
                if not future.done():
                    future.set_exception(BrowserError("the page's DevTools connection closed"))

    def _event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Network.loadingFailed" and params.get("errorText") == NETWORK_CHANGED:
            self.network_changes += 1
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(details.get("exception", {}).get("description")
                               or details.get("text", "exception"))
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.errors.append(" ".join(str(a.get("value", a.get("description", "")))
                                        for a in params.get("args", [])))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            entry = params["entry"]
            # A refused resource the page itself handles (a 401 from /api/me) is not an error
            # of the page; a CSP violation or a script error is.
            if entry.get("source") != "network":
                self.errors.append(entry.get("text", ""))
        for wanted, future in list(self._waits):
            if wanted == method and not future.done():
                future.set_result(params)
                self._waits.remove((wanted, future))

    async def call(self, method: str, **params: Any) -> Any:
        call_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls[call_id] = future
        await self._ws.send_str(json.dumps({"id": call_id, "method": method, "params": params}))
        async with asyncio.timeout(30):
            return await future

    async def prepare(self) -> None:
        for domain in ("Page", "Runtime", "Network", "Log"):
            await self.call(f"{domain}.enable")
        await self.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT,
                        deviceScaleFactor=1, mobile=False)

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (a promise is awaited)."""
        reply = await self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                                awaitPromise=True)
        if "exceptionDetails" in reply:
            raise BrowserError(f"{expression!r}: {reply['exceptionDetails'].get('text')}: "
                               f"{reply['exceptionDetails'].get('exception', {})}")
        return reply["result"].get("value")

    async def wait_for(self, expression: str, *, timeout: float = 10.0,  # noqa: ASYNC109
                       interval: float = 0.02) -> Any:
        """Polls a JavaScript expression until it is truthy; its value. An evaluation that a
        navigation cut short (the page was replaced while it ran: a redirect after login), or
        that failed while a change of the host's network aborted loads, is not an answer, and
        the poll goes on."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last: Any = None
        while loop.time() < deadline:
            changes = self.network_changes
            try:
                last = await self.evaluate(expression)
            except BrowserError as error:
                if not (any(sign in str(error) for sign in NAVIGATED)
                        or self.network_changes > changes):
                    raise
                last = str(error)
            else:
                if last:
                    return last
            await asyncio.sleep(interval)
        raise AssertionError(f"{expression!r} not true within {timeout:g} s; last: {last!r}; "
                             f"page errors: {self.errors}")

    async def open(self, url: str | Callable[[], str], *,
                   until: str = "document.readyState === 'complete'",
                   timeout: float = 15.0) -> None:  # noqa: ASYNC109
        """Navigates to `url`, then waits until the expression `until` holds. When Chromium
        aborted the navigation, or a load of the page (its script, its first fetch), because
        the host's network changed, it navigates again, up to NAVIGATE_ATTEMPTS times.
        `url` may be a function giving the address for each attempt: a single-use login link
        that the aborted page may have spent."""
        loop = asyncio.get_running_loop()
        for attempt in range(1, NAVIGATE_ATTEMPTS + 1):
            address = url() if callable(url) else url
            changes = self.network_changes
            reply = await self.call("Page.navigate", url=address)
            error = reply.get("errorText")
            last = attempt == NAVIGATE_ATTEMPTS
            if error == NETWORK_CHANGED and not last:
                continue
            if error:
                raise BrowserError(f"{address}: {error}")
            deadline = loop.time() + timeout
            while True:
                try:
                    await self.wait_for(until, timeout=min(RECHECK_S, deadline - loop.time()))
                    return
                except AssertionError as failure:
                    if self.network_changes > changes and not last:
                        break  # a load of this page was cut short: navigate again
                    if loop.time() >= deadline:
                        where = await self.evaluate(
                            "location.href + ': ' + (document.body ? document.body.innerText"
                            " : '')")
                        raise AssertionError(f"{failure} (of {timeout:g} s after opening "
                                             f"it); the page at {where!r}") from None

    async def screenshot(self, path: pathlib.Path) -> bytes:
        """The viewport as a PNG, written to `path`."""
        reply = await self.call("Page.captureScreenshot", format="png")
        data = base64.b64decode(reply["data"])
        await asyncio.to_thread(_write, path, data)
        return data

    async def close(self) -> None:
        await self._ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


class Chromium:
    def __init__(self, *, trust: str = "", args: tuple[str, ...] = ()) -> None:
        """`trust`: the base64 SHA-256 of a public key whose certificates the browser accepts
        (dashboard_pin())."""
        self._args = args + ((f"--ignore-certificate-errors-spki-list={trust}",)
                             if trust else ())
        self._proc: subprocess.Popen[bytes] | None = None
        self._profile: tempfile.TemporaryDirectory[str] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._browser: Page | None = None
        self._pages: list[Page] = []
        self.port = 0

    async def start(self) -> None:
        self._profile = tempfile.TemporaryDirectory(prefix="podium-chromium-")
        profile = pathlib.Path(self._profile.name)
        self._proc = _launch(profile, self._args)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while not (port := _devtools_port(profile)):
            if self._proc.poll() is not None or loop.time() > deadline:
                raise BrowserError(f"chromium did not open its DevTools port: "
                                   f"{_log_tail(profile)}")
            await asyncio.sleep(0.05)
        self.port = port
        self._http = aiohttp.ClientSession()
        async with self._http.get(f"http://127.0.0.1:{self.port}/json/version") as reply:
            version = await reply.json()
        ws = await self._http.ws_connect(version["webSocketDebuggerUrl"], max_msg_size=0)
        self._browser = Page(ws)

    async def new_page(self) -> Page:
        """A tab in a browser context of its own: its own cookies, its own session."""
        assert self._browser is not None and self._http is not None, "start() first"
        context = await self._browser.call("Target.createBrowserContext")
        target = await self._browser.call("Target.createTarget", url="about:blank",
                                          browserContextId=context["browserContextId"])
        ws = await self._http.ws_connect(
            f"ws://127.0.0.1:{self.port}/devtools/page/{target['targetId']}", max_msg_size=0)
        page = Page(ws)
        self._pages.append(page)
        await page.prepare()
        return page

    async def stop(self) -> None:
        """Idempotent."""
        for page in self._pages:
            await page.close()
        self._pages.clear()
        if self._browser is not None:
            await self._browser.close()
            self._browser = None
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                await asyncio.to_thread(self._proc.wait, 10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._proc.pid, signal.SIGKILL)
                await asyncio.to_thread(self._proc.wait)
            self._proc = None
        if self._profile is not None:
            self._profile.cleanup()
            self._profile = None

    async def __aenter__(self) -> Chromium:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, kind: type[BaseException] | None, value: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()


def _launch(profile: pathlib.Path, args: tuple[str, ...]) -> subprocess.Popen[bytes]:
    with open(profile / "chromium.log", "wb") as log:
        return subprocess.Popen(
            [binary(), *FLAGS, f"--user-data-dir={profile / 'data'}",
             f"--window-size={WIDTH},{HEIGHT}", *args, "about:blank"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _devtools_port(profile: pathlib.Path) -> int:
    """The DevTools port Chromium wrote into its profile (0: not yet)."""
    try:
        return int((profile / "data" / "DevToolsActivePort").read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return 0


def _log_tail(profile: pathlib.Path) -> str:
    return (profile / "chromium.log").read_text(errors="replace")[-2000:]


def _write(path: pathlib.Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


# In the dashboard's page: when each service's row first showed, and when its replicas first
# read running == desired (unix ms, the page's clock: this machine's), for measuring.
WATCH_SERVICES = """
(() => {
  window.__seen = {}; window.__converged = {};
  const look = () => {
    const now = performance.timeOrigin + performance.now();
    for (const row of document.querySelectorAll("#tbl-services tr[data-service]")) {
      const name = row.dataset.service;
      if (!(name in __seen)) __seen[name] = now;
      const cell = row.querySelector("[data-replicas]");
      const [running, desired] = (cell ? cell.textContent : "").split("/").map(Number);
      if (desired > 0 && running === desired && !(name in __converged)) __converged[name] = now;
    }
  };
  new MutationObserver(look).observe(document.querySelector("#tbl-services tbody"),
                                     {childList: true, subtree: true, characterData: true});
  look();
  return true;
})()
"""
