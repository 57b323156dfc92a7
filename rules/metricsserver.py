"""How a daemon serves its Prometheus metrics, the same for the manager and the agent: plain HTTP
(no TLS: metrics carry no secret, and Prometheus scrapes them the ordinary way) on its own
address, GET /metrics in the text exposition format, from an aiohttp app in the daemon's own event
loop (no thread: a scrape runs the registry's collectors between two steps of the loop).

`--metrics-listen HOST:PORT`, or 'off' for none; port 0 takes a free port (`port` says which).
Each daemon has its own CollectorRegistry, so that several in one process (the in-process tests)
do not share figures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web
    from prometheus_client import CollectorRegistry

OFF = "off"


def parse_listen(text: str) -> tuple[str, int] | None:
    """HOST:PORT -> (host, port); 'off' -> None. ValueError when it is neither."""
    if text.strip().lower() == OFF:
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT or 'off', not {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class MetricsServer:
    def __init__(self, *, listen: str, registry: CollectorRegistry) -> None:
        """`listen`: HOST:PORT (ValueError now if it is not one)."""
        address = parse_listen(listen)
        if address is None:
            raise ValueError("MetricsServer needs an address, not 'off'")
        self._host, self.port = address
        self._registry = registry
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        runner = self._runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self.port)
        await site.start()
        self.port = int(runner.addresses[0][1])  # the port it took when given 0

    async def _metrics(self, request: web.Request) -> web.Response:
        from aiohttp import web
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def stop(self) -> None:
        """Idempotent."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
