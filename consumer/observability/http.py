"""`/metrics`, `/healthz` and `/readyz` on one small aiohttp server."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

Probe = Callable[[], bool]
#: Why the service is not ready; [] when it is.
Readiness = Callable[[], Awaitable[list[str]]]

# Part of the public contract: the Helm chart's probes and scrape point here.
METRICS_PATH = "/metrics"
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"


class HttpServer:
    """Liveness (`/healthz`): the event loop answers and `healthy()` holds —
    about the process only, so a database outage never restarts a pod.
    Readiness (`/readyz`): `ready()` gives no reason against it (in the
    group, and the sink and the dead-letter topic can be written); its
    reasons are in the 503 body."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry,
                 healthy: Probe, ready: Readiness) -> None:
        self._host = host
        self._port = port
        self._registry = registry
        self._healthy = healthy
        self._ready = ready
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(METRICS_PATH, self._metrics)
        app.router.add_get(HEALTH_PATH, self._health)
        app.router.add_get(READY_PATH, self._readiness)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()

    async def close(self) -> None:
        """Safe to call twice."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _health(self, request: web.Request) -> web.Response:
        ok = self._healthy()
        return web.json_response({"ok": ok}, status=200 if ok else 503)

    async def _readiness(self, request: web.Request) -> web.Response:
        reasons = await self._ready()
        return web.json_response({"ok": not reasons, "reasons": reasons},
                                 status=503 if reasons else 200)
