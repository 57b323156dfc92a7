"""The DevTools page driver's polling, against a stand-in DevTools endpoint on 127.0.0.1."""
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from podium.lab.browser import BrowserError, Page


@pytest.fixture
async def devtools() -> AsyncIterator[tuple[str, list[dict]]]:
    """A websocket that answers Runtime.evaluate from a script of replies, one per call; the
    last reply repeats. Yields its URL and the script, which a test fills in."""
    script: list[dict] = []

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        calls = 0
        async for message in ws:
            call = json.loads(message.data)
            reply = script[min(calls, len(script) - 1)]
            calls += 1
            await ws.send_str(json.dumps({"id": call["id"], **reply}))
        return ws

    app = web.Application()
    app.router.add_get("/page", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/page", script
    finally:
        await runner.cleanup()


def _value(value: object) -> dict:
    return {"result": {"result": {"type": "boolean", "value": value}}}


NAVIGATED = {"error": {"code": -32000, "message": "Inspected target navigated or closed"}}


async def _poll(url: str, expression: str, within: float) -> object:
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        page = Page(ws)
        try:
            return await page.wait_for(expression, timeout=within, interval=0.01)
        finally:
            await page.close()


async def test_a_poll_cut_short_by_a_navigation_goes_on(devtools: tuple[str, list[dict]]) -> None:
    url, script = devtools
    script += [_value(False), NAVIGATED, NAVIGATED, _value(True)]
    assert await _poll(url, "ready", within=10) is True


async def test_a_poll_that_only_ever_meets_navigations_times_out_saying_so(
        devtools: tuple[str, list[dict]]) -> None:
    url, script = devtools
    script.append(NAVIGATED)
    with pytest.raises(AssertionError, match="Inspected target navigated"):
        await _poll(url, "ready", within=0.3)


async def test_any_other_devtools_error_ends_the_poll_at_once(
        devtools: tuple[str, list[dict]]) -> None:
    url, script = devtools
    script.append({"error": {"code": -32601, "message": "'Runtime.evaluate' wasn't found"}})
    with pytest.raises(BrowserError, match="wasn't found"):
        await _poll(url, "ready", within=10)
