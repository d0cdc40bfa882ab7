"""The poller against the service's own HTTP server (in process): metrics
parsed, probe status and body kept, an unreachable or silent instance shown
as such instead of raising."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from consumer.observability.http import HttpServer
from consumer.observability.metrics import Metrics
from consumer.top.poll import Poller, base_url
from devtools.ports import free_port
from tests.support.http import serving


def test_base_url_takes_host_port_urls_and_the_metrics_url() -> None:
    assert base_url("localhost:8080") == "http://localhost:8080"
    assert base_url("http://h:1/") == "http://h:1"
    assert base_url("https://h:1/metrics") == "https://h:1"


@pytest.fixture
async def not_ready() -> AsyncIterator[str]:
    """The service's server: healthy, not ready, one in-flight message."""
    metrics = Metrics()
    metrics.in_flight_messages.set(1)
    port = free_port()

    async def not_consuming() -> list[str]:
        return ["not consuming"]

    server = HttpServer("127.0.0.1", port, metrics.registry, healthy=lambda: True,
                        ready=not_consuming)
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.close()


async def test_reads_metrics_and_both_probes(not_ready: str) -> None:
    async with Poller(timeout=2) as poller:
        [got] = await poller.poll_all([not_ready])
    assert got.error is None
    assert got.scrape is not None
    assert got.scrape.total("consumer_in_flight_messages") == 1
    assert (got.health.status, got.health.ok) == (200, True)
    assert (got.ready.status, got.ready.ok) == (503, False)
    # the body as the service wrote it
    assert got.ready.body == '{"ok": false, "reasons": ["not consuming"]}'


async def test_an_unreachable_instance_is_an_answer_not_an_exception(not_ready: str) -> None:
    closed = f"127.0.0.1:{free_port()}"
    async with Poller(timeout=2) as poller:
        down, up = await poller.poll_all([closed, not_ready])
    assert down.scrape is None
    assert down.error is not None
    assert down.error.startswith("unreachable")
    assert down.health.status is None
    assert down.ready.error is not None
    assert up.scrape is not None  # one instance down does not hide the others


async def test_a_silent_instance_times_out_within_the_bound() -> None:
    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response()

    app = web.Application()
    app.router.add_get("/{tail:.*}", hang)
    # shutdown_timeout: stopping cancels the hanging handlers.
    async with serving(app, shutdown_timeout=0.1) as base, Poller(timeout=0.3) as poller:
        got = await asyncio.wait_for(poller.poll(base.removeprefix("http://")), 5)
    assert got.error == "no answer within 0.3 s"
    assert got.ready.error == "no answer within 0.3 s"


async def test_an_answer_that_is_not_prometheus_text_is_an_error() -> None:
    async def garbage(request: web.Request) -> web.Response:
        return web.Response(text="{not metrics\n")

    app = web.Application()
    app.router.add_get("/{tail:.*}", garbage)
    async with serving(app) as base, Poller(timeout=2) as poller:
        got = await poller.poll(base.removeprefix("http://"))
    assert got.scrape is None
    assert got.error is not None
    assert "not Prometheus text" in got.error
