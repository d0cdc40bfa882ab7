"""Chain composition, user middleware from settings, the HTTP client's
reaction to 429/503."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from consumer.config import Settings
from consumer.errors import ConfigError
from consumer.gates.context import Context, Next, RunContext
from consumer.gates.http import HttpClient, ThrottledError
from consumer.gates.ratelimit import Limiters
from consumer.pipeline import build_processor
from consumer.pipeline.chain import build_chain, load_middleware
from tests.support.http import serving
from tests.unit.gates.fakes import Done, process, record

SEEN: list[str] = []


class Recorder:
    """Loaded by name from CONSUMER_MIDDLEWARE in a test below."""

    async def __call__(self, ctx: Context, call_next: Next) -> None:
        SEEN.append(f"recorder:{ctx.event.id}:{ctx.attempt}")
        await call_next(ctx)


async def function_middleware(ctx: Context, call_next: Next) -> None:
    SEEN.append("function")
    await call_next(ctx)


async def test_chain_order_outermost_first() -> None:
    trail: list[str] = []

    def named(name: str) -> Any:
        async def mw(run: RunContext, call_next: Any) -> None:
            trail.append(f"{name}>")
            await call_next(run)
            trail.append(f"<{name}")

        return mw

    async def endpoint(run: RunContext) -> None:
        trail.append("handler")

    await build_chain([named("a"), named("b")], endpoint)(RunContext([record(0)], Done()))
    assert trail == ["a>", "b>", "handler", "<b", "<a"]


async def test_user_middleware_from_settings() -> None:
    SEEN.clear()
    settings = Settings(handler="tests.unit.gates.fakes:noop_handler", sink_url="none",
                        middleware="tests.unit.gates.test_middleware:Recorder,"
                                   "tests.unit.gates.test_middleware:function_middleware")
    processor = build_processor(settings)
    done = Done()
    rec = record(0)
    await process(processor, rec, done)
    assert done.offsets == [0]
    assert SEEN[0].startswith("recorder:")
    assert SEEN[0].endswith(":1")
    assert SEEN[1] == "function"
    await processor.close()


def test_bad_specs_name_the_setting() -> None:
    with pytest.raises(ConfigError, match="CONSUMER_MIDDLEWARE"):
        load_middleware("nowhere.at_all:Thing")
    with pytest.raises(ConfigError, match="CONSUMER_HANDLER"):
        build_processor(Settings(handler="nowhere:handle", sink_url="none"))


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async def throttle(request: web.Request) -> web.Response:
        return web.Response(status=503, headers={"Retry-After": "0.3"})

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/busy", throttle)
    app.router.add_get("/ok", ok)
    async with serving(app) as base:
        yield base


async def test_http_client_throttles_its_limiter(server: str) -> None:
    limiters = Limiters(100.0, 5)
    client = HttpClient(limiters, timeout=5)
    try:
        resp = await client.request("api", "GET", f"{server}/ok")
        assert resp.ok
        assert resp.json() == {"ok": True}
        with pytest.raises(ThrottledError) as caught:
            await client.request("api", "GET", f"{server}/busy")
        assert caught.value.retriable
        assert (caught.value.status, caught.value.retry_after) == (503, 0.3)
        bucket = limiters.get("api").bucket
        assert bucket.current == 50.0
        assert limiters.get("other").bucket.current == 100.0  # per downstream
    finally:
        await client.close()
        await limiters.close()
