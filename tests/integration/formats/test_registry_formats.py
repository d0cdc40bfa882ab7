"""Values written by Confluent's own serializers through a real Schema
Registry (Apicurio), consumed by `consumer run` into a real PostgreSQL:
Avro and JSON Schema end to end, schema evolution, the dead letters of an
unknown schema id, a corrupt payload and a model refusal, a registry that
goes away mid-stream, and a registry that refuses the password."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
import uuid
from typing import Any

import asyncpg
import pytest

from consumer.formats.wire import frame
from devtools.harness import (
    Service,
    committed_all,
    count_rows,
    create_topics,
    read_topic,
    wait_until,
)
from devtools.ports import free_port
from devtools.registry import CCOMPAT, BasicAuthProxy, LocalSchemaRegistry
from schemas.avro_schemas import avro_schema
from tests.integration.formats.outside import (
    avro_values,
    json_schema_values,
    produce_raw,
    sample_events,
)

pytestmark = pytest.mark.integration


def service_for(bootstrap: str, topic: str, dlq: str, dsn: str, registry_url: str, *,
                value_format: str = "avro", **settings: str) -> Service:
    return Service(bootstrap_servers=bootstrap, topics=topic, dlq_topic=dlq, sink_url=dsn,
                   group_id=f"g-{uuid.uuid4().hex[:8]}", value_format=value_format,
                   schema_registry_url=registry_url, **settings)


async def stored(dsn: str) -> dict[str, Any]:
    """id → stored `data` of every row."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT id, data FROM events")
    finally:
        await conn.close()
    return {r["id"]: json.loads(r["data"]) if isinstance(r["data"], str) else r["data"]
            for r in rows}


def headers_of(record: Any) -> dict[str, str]:
    return {k: (v or b"").decode() for k, v in record.headers}


async def run_to_end(service: Service, bootstrap: str, topic: str, dsn: str, rows: int) -> None:
    """Wait for `rows` rows and every offset committed, then stop the service (exit 0)."""
    try:
        async def all_stored() -> bool:
            return await count_rows(dsn) >= rows

        await wait_until(all_stored, 180, f"{rows} rows", service)
        group = service.env["CONSUMER_GROUP_ID"]
        await wait_until(lambda: committed_all(bootstrap, group, topic), 60,
                         "offsets committed to the end", service)
    finally:
        code = service.terminate()
    assert code == 0, service.log_tail()


def readyz(service: Service) -> tuple[int, str]:
    url = f"http://127.0.0.1:{service.env['CONSUMER_HTTP_PORT']}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def test_avro_from_confluents_serializer_into_postgres_with_its_dead_letters(
        kafka_bootstrap: str, db_dsn: str, schema_registry: LocalSchemaRegistry) -> None:
    topic, dlq = await create_topics(kafka_bootstrap, partitions=3)
    events = sample_events(300)
    good = await asyncio.to_thread(avro_values, schema_registry.url, topic, events)
    paid = next(e for e in events if e.type == "order.paid")
    # A record Avro accepts and the model refuses (a negative amount).
    broken = paid.model_copy(update={"id": "negative-amount", "data": paid.data.model_copy(
        update={"amount_cents": -5})})
    [refused] = await asyncio.to_thread(avro_values, schema_registry.url, topic, [broken])
    known_id = int.from_bytes(good[0][1][1:5], "big")
    bad = [refused,
           (b"k", frame(987_654, b"\x02")),  # an id the registry never gave out
           (b"k", frame(known_id, b"\xff\xff\xff\xff"))]  # corrupt Avro of a real schema
    await asyncio.to_thread(produce_raw, kafka_bootstrap, topic, good + bad)

    service = service_for(kafka_bootstrap, topic, dlq, db_dsn, schema_registry.url).start()
    await run_to_end(service, kafka_bootstrap, topic, db_dsn, len(events))

    rows = await stored(db_dsn)
    assert rows == {e.id: e.data_dict() for e in events}
    dead = {headers_of(r)["dlq.error.message"].split(":")[0]: headers_of(r)
            for r in await read_topic(kafka_bootstrap, dlq)}
    assert set(dead) == {"schema_violation", "unknown_schema", "undecodable"}
    assert dead["unknown_schema"]["dlq.schema.id"] == "987654"
    assert dead["undecodable"]["dlq.schema.id"] == str(known_id)
    refused_id = int.from_bytes(refused[1][1:5], "big")
    assert dead["schema_violation"]["dlq.schema.id"] == str(refused_id)
    assert all(h["dlq.error.type"] == "InvalidEvent" for h in dead.values())


async def test_json_schema_and_plain_json_side_by_side_with_auto(
        kafka_bootstrap: str, db_dsn: str, schema_registry: LocalSchemaRegistry) -> None:
    topic, dlq = await create_topics(kafka_bootstrap, partitions=2)
    framed, plain = sample_events(100, seed=1), sample_events(50, seed=2)
    values = await asyncio.to_thread(json_schema_values, schema_registry.url, topic, framed)
    values += [(e.key().encode(), e.model_dump_json().encode()) for e in plain]
    await asyncio.to_thread(produce_raw, kafka_bootstrap, topic, values)

    service = service_for(kafka_bootstrap, topic, dlq, db_dsn, schema_registry.url,
                          value_format="auto").start()
    await run_to_end(service, kafka_bootstrap, topic, db_dsn, len(framed) + len(plain))

    rows = await stored(db_dsn)
    assert rows == {e.id: e.data_dict() for e in [*framed, *plain]}
    assert await read_topic(kafka_bootstrap, dlq, idle=1.0) == []


def with_note(schema: dict[str, Any]) -> dict[str, Any]:
    """The writer schema's next version: `data` gains an optional `note`."""
    data = dict(schema["fields"][-1]["type"])
    data["fields"] = [*data["fields"], {"name": "note", "type": ["null", "string"],
                                        "default": None}]
    return {**schema, "fields": [*schema["fields"][:-1], {"name": "data", "type": data}]}


async def test_a_newer_writer_schema_with_an_optional_field_reads_with_the_same_model(
        kafka_bootstrap: str, db_dsn: str, schema_registry: LocalSchemaRegistry) -> None:
    topic, dlq = await create_topics(kafka_bootstrap, partitions=1)
    events = [e for e in sample_events(200, seed=3) if e.type == "order.paid"]
    older, newer = events[: len(events) // 2], events[len(events) // 2:]
    v2 = {("order.paid", 1): with_note(avro_schema("order.paid", 1))}
    values = await asyncio.to_thread(avro_values, schema_registry.url, topic, older)
    values += await asyncio.to_thread(avro_values, schema_registry.url, topic, newer, v2,
                                      {"note": "gift wrap"})
    ids = {int.from_bytes(v[1:5], "big") for _, v in values}
    assert len(ids) == 2  # two writer schemas in one subject
    await asyncio.to_thread(produce_raw, kafka_bootstrap, topic, values)

    service = service_for(kafka_bootstrap, topic, dlq, db_dsn, schema_registry.url).start()
    await run_to_end(service, kafka_bootstrap, topic, db_dsn, len(events))

    assert await stored(db_dsn) == {e.id: e.data_dict() for e in events}
    assert await read_topic(kafka_bootstrap, dlq, idle=1.0) == []


async def test_a_registry_down_mid_stream_holds_records_in_flight_then_delivers_them(
        kafka_bootstrap: str, db_dsn: str, own_registry: LocalSchemaRegistry) -> None:
    topic, dlq = await create_topics(kafka_bootstrap, partitions=2)
    first, second = sample_events(100, seed=4), sample_events(100, seed=5)
    before = await asyncio.to_thread(avro_values, own_registry.url, topic, first)
    # The second batch's writer schema is registered now, but the service
    # meets it only while the registry is down.
    v2 = {key: with_note(avro_schema(*key)) for key in {(e.type, e.version) for e in second}}
    after = await asyncio.to_thread(avro_values, own_registry.url, topic, second, v2,
                                    {"note": "late"})
    await asyncio.to_thread(produce_raw, kafka_bootstrap, topic, before)

    service = service_for(kafka_bootstrap, topic, dlq, db_dsn, own_registry.url).start()
    try:
        async def first_stored() -> bool:
            return await count_rows(db_dsn) >= len(first)

        await wait_until(first_stored, 120, "the first batch stored", service)
        own_registry.halt()
        await asyncio.to_thread(produce_raw, kafka_bootstrap, topic, after)

        def not_ready_because_of_the_registry() -> bool:
            status, body = readyz(service)
            return status == 503 and "schema registry" in body

        await wait_until(not_ready_because_of_the_registry, 60, "/readyz naming the registry",
                         service)
        assert await count_rows(db_dsn) == len(first)
        assert 'consumer_schema_registry_requests_total{outcome="unreachable"}' in \
            service.metrics()
        own_registry.start()

        async def all_stored() -> bool:
            return await count_rows(db_dsn) >= len(first) + len(second)

        await wait_until(all_stored, 120, "every record stored after the restart", service)
        await wait_until(lambda: readyz(service)[0] == 200, 30, "ready again", service)
        group = service.env["CONSUMER_GROUP_ID"]
        await wait_until(lambda: committed_all(kafka_bootstrap, group, topic), 60,
                         "offsets committed to the end", service)
    finally:
        code = service.terminate()
    assert code == 0, service.log_tail()
    assert await stored(db_dsn) == {e.id: e.data_dict() for e in [*first, *second]}
    assert await read_topic(kafka_bootstrap, dlq, idle=1.0) == []


async def test_a_wrong_registry_password_or_no_registry_exits_1_with_one_line(
        kafka_bootstrap: str, db_dsn: str, schema_registry: LocalSchemaRegistry) -> None:
    topic, dlq = await create_topics(kafka_bootstrap, partitions=1)
    secret = "s3cret-" + uuid.uuid4().hex[:8]
    proxy = BasicAuthProxy(schema_registry.base_url, "svc", secret)
    proxy.start()
    try:
        url = proxy.url + CCOMPAT
        wrong = service_for(kafka_bootstrap, topic, dlq, db_dsn, url,
                            schema_registry_user="svc",
                            schema_registry_password="not-" + secret).start()
        assert wrong.proc is not None
        code = await asyncio.to_thread(wrong.proc.wait, 60)
        assert code == 1, wrong.log_tail()
        lines = [line for line in wrong.log_tail().splitlines() if "cannot run" in line]
        assert len(lines) == 1, wrong.log_tail()
        assert f"schema registry {url}: refused (HTTP 401)" in lines[0]
        assert secret not in wrong.log_tail()

        nobody = f"http://127.0.0.1:{free_port()}{CCOMPAT}"
        absent = service_for(kafka_bootstrap, topic, dlq, db_dsn, nobody).start()
        assert absent.proc is not None
        assert await asyncio.to_thread(absent.proc.wait, 60) == 1, absent.log_tail()
        lines = [line for line in absent.log_tail().splitlines() if "cannot run" in line]
        assert len(lines) == 1, absent.log_tail()
        assert f"schema registry {nobody}: unreachable" in lines[0]

        # The right password through the same proxy: consumed as usual.
        events = sample_events(20, seed=6)
        values = await asyncio.to_thread(avro_values, schema_registry.url, topic, events)
        await asyncio.to_thread(produce_raw, kafka_bootstrap, topic, values)
        right = service_for(kafka_bootstrap, topic, dlq, db_dsn, url, schema_registry_user="svc",
                            schema_registry_password=secret).start()
        await run_to_end(right, kafka_bootstrap, topic, db_dsn, len(events))
    finally:
        proxy.stop()
