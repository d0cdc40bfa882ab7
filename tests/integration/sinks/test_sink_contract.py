"""The contract every sink passes: open → write → idempotency → close twice →
health; a write refused for one row stores exactly the rows it names as
written. Real PostgreSQL, a SQLite file, a real Kafka topic, an HTTP
receiver on loopback, and `none`."""

from __future__ import annotations

import asyncio
import base64
import os
import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from consumer.config import Settings
from consumer.errors import PartlyWritten, SinkError
from consumer.sinks import open_sink
from consumer.sinks.base import Row
from consumer.sinks.postgres import PostgresSink
from consumer.types import Sink
from devtools.ports import free_port
from tests.integration.sinks.dbs import fetch, fresh_database
from tests.support.http import serving

pytestmark = pytest.mark.integration

#: Reads back what the sink stored, as (id, topic, partition, offset, data) tuples.
Reader = Callable[[], Awaitable[list[tuple[str, str, int, int, dict[str, object]]]]]


async def _nothing() -> None:
    return None


@dataclass
class Case:
    sink: Sink
    read: Reader | None  # None: the sink keeps nothing to read
    idempotent: bool
    cleanup: Callable[[], Awaitable[None]] = _nothing


def rows(n: int, start: int = 0) -> list[Row]:
    base = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    return [Row.build(id=f"id-{i:04d}", type="order.created",
                version=1, occurred_at=base + timedelta(seconds=i),
                data={"n": i, "text": "héllo", "nested": {"a": [1, 2]}}, source="test",
                topic="events", partition=i % 3, offset=i, key=f"k{i}".encode())
            for i in range(start, start + n)]


async def postgres_case(pg_dsn: str) -> Case:
    dsn = await fresh_database(pg_dsn, "contract")

    async def read() -> list[tuple[str, str, int, int, dict[str, object]]]:
        out = await fetch(dsn, 'SELECT id, topic, partition, "offset", data::text AS data '
                               "FROM events ORDER BY id")
        return [(r["id"], r["topic"], r["partition"], r["offset"], orjson.loads(r["data"]))
                for r in out]

    return Case(open_sink(dsn), read, idempotent=True)


def sqlite_case(tmp_path: Path) -> Case:
    path = tmp_path / "contract.db"

    async def read() -> list[tuple[str, str, int, int, dict[str, object]]]:
        with sqlite3.connect(path) as conn:
            out = conn.execute('SELECT id, topic, partition, "offset", data FROM events '
                               "ORDER BY id").fetchall()
        return [(i, t, p, o, orjson.loads(d)) for i, t, p, o, d in out]

    return Case(open_sink(f"sqlite:///{path}"), read, idempotent=True)


async def kafka_case(bootstrap: str, **topic_config: str) -> Case:
    topic = f"sink-{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1,
                                            topic_configs=topic_config)])
    finally:
        await admin.close()

    async def read() -> list[tuple[str, str, int, int, dict[str, object]]]:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        out = []
        try:
            idle = 0
            while idle < 3:
                batch = await consumer.getmany(timeout_ms=500)
                idle = 0 if batch else idle + 1
                for records in batch.values():
                    for rec in records:
                        env = orjson.loads(rec.value)
                        assert rec.key == f"k{env['data']['n']}".encode()  # key kept
                        out.append((env["id"], "events", env["data"]["n"] % 3,
                                    env["data"]["n"], env["data"]))
        finally:
            await consumer.stop()
        return sorted(out)

    settings = Settings(bootstrap_servers=bootstrap)
    return Case(open_sink(f"kafka://{topic}", settings=settings), read, idempotent=False)


async def http_case() -> Case:
    """An in-process receiver: stores each posted array; refuses (422) a
    payload holding a row with id "poison"."""
    from aiohttp import web

    received: list[dict[str, Any]] = []

    async def ingest(request: web.Request) -> web.Response:
        batch = await request.json()
        if any(item["id"] == "poison" for item in batch):
            return web.Response(status=422, text="refused")
        received.extend(batch)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/ingest", ingest)
    server = AsyncExitStack()
    base = await server.enter_async_context(serving(app))

    async def read() -> list[tuple[str, str, int, int, dict[str, object]]]:
        return sorted((e["id"], e["_kafka"]["topic"], e["_kafka"]["partition"],
                       e["_kafka"]["offset"], e["data"]) for e in received)

    return Case(open_sink(f"{base}/ingest"), read, idempotent=False, cleanup=server.aclose)


@pytest.fixture(params=["postgres", "sqlite", "kafka", "http", "none"])
def kind(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(sink kind, server address); the servers start outside the event loop."""
    name = str(request.param)
    address = ""
    if name == "postgres":
        address = request.getfixturevalue("pg_dsn")
    elif name == "kafka":
        address = request.getfixturevalue("kafka_bootstrap")
    return name, address


async def make_case(kind: tuple[str, str], tmp_path: Path) -> Case:
    name, address = kind
    if name == "postgres":
        return await postgres_case(address)
    if name == "sqlite":
        return sqlite_case(tmp_path)
    if name == "kafka":
        return await kafka_case(address)
    if name == "http":
        return await http_case()
    return Case(open_sink("none"), None, idempotent=True)


def expected(batch: list[Row]) -> list[tuple[str, str, int, int, dict[str, object]]]:
    return sorted((r.id, r.topic, r.partition, r.offset, r.data) for r in batch)


async def test_open_write_read_back(kind: tuple[str, str],
                                    tmp_path: Path) -> None:
    case = await make_case(kind, tmp_path)
    await case.sink.open()
    await case.sink.open()  # opening twice is harmless
    try:
        batch = rows(50)
        await case.sink.write(batch[:20])
        await case.sink.write(batch[20:])
        await case.sink.write([])
        if case.read is not None:
            assert await case.read() == expected(batch)
    finally:
        await case.sink.close()
        await case.cleanup()


async def test_same_rows_twice_are_stored_once(kind: tuple[str, str],
                                               tmp_path: Path) -> None:
    case = await make_case(kind, tmp_path)
    await case.sink.open()
    try:
        first, second = rows(30), rows(30, start=20)  # 10 overlap
        await case.sink.write(first)
        await case.sink.write(first)
        await case.sink.write(second + second[:5])  # duplicates inside one batch too
        if case.read is None:
            return
        got = await case.read()
        unique = expected(first + rows(20, start=30))
        if case.idempotent:
            assert got == unique
        else:
            # At-least-once: every row present, duplicates allowed.
            assert {t[0] for t in got} == {t[0] for t in unique}
            assert len(got) == 30 + 30 + 30 + 5
    finally:
        await case.sink.close()
        await case.cleanup()


async def test_close_twice_and_health(kind: tuple[str, str],
                                      tmp_path: Path) -> None:
    case = await make_case(kind, tmp_path)
    await case.sink.open()
    assert await case.sink.healthy()
    await case.sink.close()
    await case.sink.close()
    await case.cleanup()
    if kind[0] != "none":
        assert not await case.sink.healthy()
        with pytest.raises(SinkError) as info:
            await case.sink.write(rows(1))
        assert info.value.retriable


def incompressible(size: int) -> str:
    """Text that stays about `size` bytes whatever the producer's codec."""
    return base64.b64encode(os.urandom(size)).decode()


def refused_row(kind: str) -> Row:
    """A row `kind`'s destination refuses for its own bytes: a NUL character
    for PostgreSQL, the id the HTTP receiver refuses, more than the Kafka
    topic's `max.message.bytes`."""
    data: dict[str, object] = {"s": "nul\u0000char"} if kind == "postgres" else {}
    if kind == "kafka":
        data = {"blob": incompressible(100_000)}
    return Row.build(id="poison", type="t", version=1, occurred_at=datetime.now(UTC), data=data,
                     source=None, topic="events", partition=0, offset=99, key=None)


@pytest.fixture(params=["postgres", "kafka", "http"])
def refusing(request: pytest.FixtureRequest) -> tuple[str, str]:
    """The sinks whose destination can refuse one row (SQLite and `none`
    take every row)."""
    name = str(request.param)
    fixture = {"postgres": "pg_dsn", "kafka": "kafka_bootstrap"}.get(name)
    return name, request.getfixturevalue(fixture) if fixture else ""


async def test_a_refused_write_stored_exactly_the_rows_it_names(
        refusing: tuple[str, str], tmp_path: Path) -> None:
    """A write that fails for one row's bytes is not retriable, and the
    destination holds exactly the rows the error names as written
    (`PartlyWritten.written`; none for an all-or-nothing sink): the batcher
    never sends those again and bisects only the rest."""
    name, address = refusing
    case = (await kafka_case(address, **{"max.message.bytes": "60000"}) if name == "kafka"
            else await make_case(refusing, tmp_path))
    assert case.read is not None
    await case.sink.open()
    try:
        batch = [*rows(3), refused_row(name), *rows(2, start=3)]
        with pytest.raises(SinkError) as info:
            await case.sink.write(batch)
        written = info.value.written if isinstance(info.value, PartlyWritten) else ()
        assert 3 not in written
        assert not info.value.retriable
        assert await case.read() == expected([batch[i] for i in written])
    finally:
        await case.sink.close()
        await case.cleanup()


async def test_postgres_meets_stored_ids_then_returns_to_the_direct_copy(pg_dsn: str) -> None:
    """A redelivered stretch: the batch holding stored ids is written the
    idempotent way, and so is every batch after it until one is all new."""
    case = await postgres_case(pg_dsn)
    sink = case.sink
    assert isinstance(sink, PostgresSink)
    assert case.read is not None
    await sink.open()
    try:
        await sink.write(rows(10))
        assert sink._direct  # nothing stored before: COPY straight into `events`
        await sink.write(rows(10, start=5))  # 5 stored, 5 new
        assert not sink._direct
        await sink.write(rows(5, start=12))  # 3 stored, 2 new: still the idempotent way
        assert not sink._direct
        await sink.write(rows(5, start=17))  # all new: the redelivery is over
        assert sink._direct
        await sink.write(rows(3, start=22))
        assert await case.read() == expected(rows(25))
    finally:
        await sink.close()
        await case.cleanup()


async def test_postgres_rejects_a_bad_row_as_not_retriable(pg_dsn: str) -> None:
    case = await postgres_case(pg_dsn)
    await case.sink.open()
    try:
        bad = rows(3)
        poison = Row.build(id="poison", type="t", version=1, occurred_at=bad[0].occurred_at,
                     data={"s": "nul\u0000char"}, source=None, topic="events", partition=0,
                     offset=9, key=None)
        with pytest.raises(SinkError) as info:
            await case.sink.write([*bad, poison])
        assert not info.value.retriable
        assert case.read is not None
        assert await case.read() == []  # all-or-nothing
        await case.sink.write(bad)
        assert len(await case.read()) == 3
    finally:
        await case.sink.close()
        await case.cleanup()


async def test_http_refusal_is_not_retriable_and_unreachable_is() -> None:
    case = await http_case()
    await case.sink.open()
    try:
        with pytest.raises(SinkError) as info:
            await case.sink.write([*rows(2), Row.build(id="poison", type="t", version=1,
                                                 occurred_at=datetime.now(UTC), data={},
                                                 source=None, topic="t", partition=0,
                                                 offset=0, key=None)])
        assert not info.value.retriable
    finally:
        await case.sink.close()
        await case.cleanup()
    gone = open_sink(f"http://127.0.0.1:{free_port()}/x")
    await gone.open()
    with pytest.raises(SinkError) as info:
        await gone.write(rows(1))
    assert info.value.retriable
    await gone.close()


async def test_postgres_unreachable_is_retriable() -> None:
    sink = open_sink(f"postgresql://nobody@127.0.0.1:{free_port()}/none")
    with pytest.raises(SinkError) as info:
        await sink.open()
    assert info.value.retriable
    assert not await sink.healthy()
    await sink.close()


async def test_sqlite_table_has_the_contract_columns_and_indexes(tmp_path: Path) -> None:
    case = sqlite_case(tmp_path)
    await case.sink.open()
    await case.sink.close()
    with sqlite3.connect(tmp_path / "contract.db") as conn:
        cols = [r[1] for r in conn.execute("PRAGMA table_info(events)")]
        indexes = {r[1] for r in conn.execute("PRAGMA index_list(events)")}
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert cols == ["id", "type", "version", "occurred_at", "data", "source", "topic",
                    "partition", "offset", "key", "stored_at"]
    assert {"events_type_occurred_at_idx", "events_topic_partition_offset_idx"} <= indexes
    assert mode == "wal"


async def test_postgres_concurrent_opens_migrate_once(pg_dsn: str) -> None:
    dsn = await fresh_database(pg_dsn, "migrate")
    sinks = [open_sink(dsn) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in sinks))
    await asyncio.gather(*(s.close() for s in sinks))
    idx = await fetch(dsn, "SELECT indexname FROM pg_indexes WHERE tablename = 'events'")
    assert {r["indexname"] for r in idx} >= {"events_pkey", "events_type_occurred_at_idx",
                                              "events_topic_partition_offset_idx"}
