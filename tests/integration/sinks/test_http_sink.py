"""The HTTP sink against a real aiohttp server on loopback: redirects are
never followed, only answers that refuse the payload split and dead-letter,
every other failure is a retriable sink failure that marks the sink
unhealthy until a write succeeds — retried by the batcher, nothing lost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from consumer.config import Settings
from consumer.errors import SinkError
from consumer.sinks import open_sink
from consumer.sinks.batcher import Batcher
from consumer.sinks.http import HttpSink
from tests.integration.sinks.test_sink_contract import rows
from tests.support.http import serving

pytestmark = pytest.mark.integration


@dataclass
class Receiver:
    """POST /ingest answers `answers` in turn (status, body, headers), then 204
    and stores the batch; any request to /moved is recorded."""

    url: str = ""
    answers: list[tuple[int, bytes, dict[str, str]]] = field(default_factory=list)
    stored: list[dict[str, Any]] = field(default_factory=list)
    posts: int = 0
    moved: list[str] = field(default_factory=list)

    def answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
               times: int = 1) -> None:
        self.answers += [(status, body, headers or {})] * times


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()

    async def ingest(request: web.Request) -> web.Response:
        state.posts += 1
        payload = await request.json()
        if state.answers:
            status, body, headers = state.answers.pop(0)
            return web.Response(status=status, body=body, headers=headers)
        state.stored.extend(payload)
        return web.Response(status=204)

    async def moved(request: web.Request) -> web.Response:
        state.moved.append(request.method)
        return web.Response(status=200, text="ok")

    app = web.Application()
    app.router.add_post("/ingest", ingest)
    app.router.add_route("*", "/moved", moved)
    async with serving(app) as base:
        state.url = f"{base}/ingest"
        yield state


@pytest.fixture
async def sink(receiver: Receiver) -> AsyncIterator[HttpSink]:
    built = open_sink(receiver.url)
    assert isinstance(built, HttpSink)
    await built.open()
    try:
        yield built
    finally:
        await built.close()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_is_never_followed_and_fails_as_retriable(
        receiver: Receiver, sink: HttpSink, status: int) -> None:
    receiver.answer(status, headers={"Location": "/moved?token=hush"})
    with pytest.raises(SinkError) as info:
        await sink.write(rows(3))
    assert info.value.retriable
    assert receiver.moved == []  # no GET without the body, no POST elsewhere
    assert not await sink.healthy()
    assert sink.unhealthy_reason is not None
    assert f"{status} redirect" in sink.unhealthy_reason
    assert "hush" not in sink.unhealthy_reason
    await sink.write(rows(3))  # the receiver is back: healthy again
    assert await sink.healthy()
    assert sink.unhealthy_reason is None
    assert [r["id"] for r in receiver.stored] == [r.id for r in rows(3)]


@pytest.mark.parametrize("status", [400, 413, 415, 422])
async def test_an_answer_refusing_the_payload_is_not_retriable(
        receiver: Receiver, sink: HttpSink, status: int) -> None:
    receiver.answer(status, b"bad payload")
    with pytest.raises(SinkError) as info:
        await sink.write(rows(2))
    assert not info.value.retriable
    assert "bad payload" in str(info.value)
    assert await sink.healthy()  # the rows, not the sink


@pytest.mark.parametrize("status", [401, 403, 404, 405, 407, 408, 409, 410, 425, 429,
                                    500, 502, 503, 504])
async def test_auth_routing_throttling_and_server_errors_are_sink_failures(
        receiver: Receiver, sink: HttpSink, status: int) -> None:
    receiver.answer(status, b"nope")
    with pytest.raises(SinkError) as info:
        await sink.write(rows(2))
    assert info.value.retriable
    assert not await sink.healthy()
    assert sink.unhealthy_reason == f"http sink: {status} nope"
    await sink.write(rows(2))
    assert await sink.healthy()


async def test_a_body_that_is_not_utf8_or_huge_never_changes_the_classification(
        receiver: Receiver, sink: HttpSink) -> None:
    receiver.answer(503, b"\xff\xfe\x80 down " * 10)
    receiver.answer(500, b"x" * 5_000_000)
    receiver.answer(422, b"\xc3\x28 invalid")
    with pytest.raises(SinkError) as info:
        await sink.write(rows(1))
    assert info.value.retriable
    assert "\ufffd" in str(info.value)
    with pytest.raises(SinkError) as info:
        await sink.write(rows(1))
    assert info.value.retriable
    assert len(str(info.value)) < 300  # read bounded, quoted short
    with pytest.raises(SinkError) as info:
        await sink.write(rows(1))
    assert not info.value.retriable


def batcher_settings() -> Settings:
    return Settings(batch_max_items=100, batch_max_latency=0.01, sink_retry_base_delay=0.01,
                    sink_retry_max_delay=0.05)


@pytest.mark.parametrize("status", [302, 401, 404, 503])
async def test_the_batcher_retries_a_failing_sink_and_dead_letters_nothing(
        receiver: Receiver, sink: HttpSink, status: int) -> None:
    """Through the batcher: the rows stay in flight (the batcher's backoff)
    while the receiver fails, then are written once; none is refused."""
    receiver.answer(status, b"later", headers={"Location": "/moved"}, times=4)
    batch = rows(10)
    async with Batcher(sink, batcher_settings()) as batcher:
        unit = batcher.submit_many(batch)
        async with asyncio.timeout(20):
            while batcher.writing_ok:  # noqa: ASYNC110 - no event to wait on
                await asyncio.sleep(0.001)  # the failing write is being retried
            await unit  # raises RowsRefused if any row was dead-lettered
        assert batcher.writing_ok
        assert await batcher.healthy()
    assert receiver.posts == 5  # four failures, one whole batch: never split
    assert receiver.moved == []
    assert [r["id"] for r in receiver.stored] == [r.id for r in batch]
