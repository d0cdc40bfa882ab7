"""`RegistryFormat` against a real HTTP server on loopback that answers like
a registry: one request per schema id however many callers miss it at once,
unknown ids remembered, an unreachable registry retriable and reported by
`unready()` until it answers again."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import fastavro
import pytest
from aiohttp import web

from consumer.errors import RegistryError
from consumer.formats import decode_all, prepare_until_ready
from consumer.formats.client import RegistryClient
from consumer.formats.registry import RegistryFormat
from consumer.formats.wire import frame
from consumer.types import Undecodable
from schemas import InvalidEvent, validate_dict
from schemas.avro_schemas import avro_record, avro_schema
from schemas.samples import sample_event
from tests.support.http import serving

SCHEMA = avro_schema("order.paid", 1)


class Registry:
    """The answers: schema 1 exists; `down` answers 503; requests counted."""

    def __init__(self) -> None:
        self.requests: list[int] = []
        self.down = False
        self.release = asyncio.Event()
        self.release.set()
        self._asked = asyncio.Event()

    async def asked(self, count: int) -> None:
        """Return once `count` requests arrived."""
        while len(self.requests) < count:
            self._asked.clear()
            await self._asked.wait()

    async def schema(self, request: web.Request) -> web.Response:
        sid = int(request.match_info["sid"])
        self.requests.append(sid)
        self._asked.set()
        await self.release.wait()
        if self.down:
            return web.json_response({"error_code": 50001}, status=503)
        if sid != 1:
            return web.json_response({"error_code": 40403, "message": "not found"}, status=404)
        return web.json_response({"schema": json.dumps(SCHEMA)})

    async def subjects(self, _request: web.Request) -> web.Response:
        return web.json_response([])


@pytest.fixture
async def registry() -> AsyncIterator[tuple[Registry, str]]:
    answers = Registry()
    app = web.Application()
    app.router.add_get("/schemas/ids/{sid}", answers.schema)
    app.router.add_get("/subjects", answers.subjects)
    async with serving(app) as url:
        yield answers, url


def avro_value(schema_id: int = 1) -> bytes:
    event = validate_dict(sample_event(0, type="order.paid"))
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(SCHEMA), avro_record(event))
    return frame(schema_id, buf.getvalue())


async def test_concurrent_misses_of_one_id_make_one_request(
        registry: tuple[Registry, str]) -> None:
    answers, url = registry
    fmt = RegistryFormat(RegistryClient(url), value_format="avro")
    await fmt.start()
    try:
        answers.release.clear()
        values: list[Any] = [avro_value(), avro_value()]
        waiting = [asyncio.create_task(fmt.prepare(values)) for _ in range(5)]
        await answers.asked(1)
        answers.release.set()
        await asyncio.gather(*waiting)
        assert answers.requests == [1]
        await fmt.prepare(values)  # cached now
        assert answers.requests == [1]
        assert [type(e).__name__ for e in decode_all(fmt, values)] == ["OrderPaidV1"] * 2
    finally:
        await fmt.close()


async def test_an_unknown_id_is_asked_once_and_refused_with_its_id(
        registry: tuple[Registry, str]) -> None:
    answers, url = registry
    fmt = RegistryFormat(RegistryClient(url), value_format="avro")
    await fmt.start()
    try:
        values: list[Any] = [avro_value(42), avro_value(42), b'{"plain": "json"}',
                             Undecodable(b"\xff", "bad header"), None]
        await fmt.prepare(values)
        await fmt.prepare(values)
        assert answers.requests == [42]
        results = decode_all(fmt, values)
        assert all(isinstance(r, InvalidEvent) for r in results)
        reasons = [(r.reason, r.schema_id) for r in results if isinstance(r, InvalidEvent)]
        assert reasons == [("unknown_schema", 42), ("unknown_schema", 42),
                           ("undecodable", None), ("undecodable", None), ("empty", None)]
    finally:
        await fmt.close()


async def test_auto_reads_plain_json_beside_the_wire_format(
        registry: tuple[Registry, str]) -> None:
    _answers, url = registry
    fmt = RegistryFormat(RegistryClient(url), value_format="auto")
    await fmt.start()
    try:
        plain = json.dumps(sample_event(1, type="order.cancelled")).encode()
        values: list[Any] = [avro_value(), plain]
        await fmt.prepare(values)
        assert [type(e).__name__ for e in decode_all(fmt, values)] == [
            "OrderPaidV1", "OrderCancelledV1"]
    finally:
        await fmt.close()


async def test_a_registry_that_cannot_answer_is_retried_and_reported_until_it_does(
        registry: tuple[Registry, str]) -> None:
    answers, url = registry
    fmt = RegistryFormat(RegistryClient(url), value_format="avro")
    await fmt.start()
    try:
        answers.down = True
        with pytest.raises(RegistryError, match="HTTP 503") as caught:
            await fmt.prepare([avro_value()])
        assert caught.value.retriable
        assert fmt.unready()
        assert "HTTP 503" in fmt.unready()[0]
        waiting = asyncio.create_task(prepare_until_ready(fmt, [avro_value()]))
        await answers.asked(3)
        assert not waiting.done()
        answers.down = False
        await waiting
        assert fmt.unready() == []
    finally:
        await fmt.close()


async def test_start_fails_with_one_line_when_nothing_listens() -> None:
    from devtools.ports import free_port

    url = f"http://127.0.0.1:{free_port()}"
    fmt = RegistryFormat(RegistryClient(url), value_format="avro")
    try:
        with pytest.raises(RegistryError, match=f"schema registry {url}: unreachable"):
            await fmt.start()
    finally:
        await fmt.close()


async def test_the_validation_gate_fetches_then_decodes_a_run_in_order(
        registry: tuple[Registry, str]) -> None:
    from consumer.gates.context import RunContext
    from consumer.gates.validation import Validation
    from tests.unit.gates.fakes import record

    answers, url = registry
    fmt = RegistryFormat(RegistryClient(url), value_format="avro")
    await fmt.start()
    try:
        seen: list[tuple[list[int], list[str], str | None]] = []

        async def rest(run: RunContext) -> None:
            seen.append(([r.offset for r in run.records],
                         [type(e).__name__ for e in run.events],
                         None if run.error is None else getattr(run.error, "reason", None)))

        # A record alone: its writer schema fetched (one request), then decoded.
        await Validation(value_format=fmt)(RunContext([record(0, value=avro_value())],
                                                      lambda _: None), rest)
        assert seen == [([0], ["OrderPaidV1"], None)]
        assert answers.requests == [1]
        # A run: one fetch pass, one decoding pass, cut into parts in order.
        seen.clear()
        records = [record(1, value=avro_value()), record(2, value=avro_value(7)),
                   record(3, value=avro_value())]
        await Validation(value_format=fmt)(RunContext(records, lambda _: None), rest)
        assert seen == [([1], ["OrderPaidV1"], None), ([2], [], "unknown_schema"),
                        ([3], ["OrderPaidV1"], None)]
    finally:
        await fmt.close()
