"""The harness itself: a real broker and a real PostgreSQL answer."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from tests.support.kafka import NewTopicFactory

pytestmark = pytest.mark.integration

COUNT = 10_000
PARTITIONS = 6


async def test_commit_explicit_offsets_then_group_receives_nothing(
    kafka_bootstrap: str, new_topic: NewTopicFactory
) -> None:
    topic = await new_topic("harness", partitions=PARTITIONS)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True,
                                linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, key=str(i).encode(), value=f"v{i}".encode())
                   for i in range(COUNT)]
        await producer.flush()
        assert all(f.done() and not f.exception() for f in futures)
    finally:
        await producer.stop()

    group = f"g-{uuid.uuid4().hex[:8]}"
    seen: set[bytes] = set()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=group,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        async with asyncio.timeout(60):
            while len(seen) < COUNT:
                batch = await consumer.getmany(timeout_ms=1000)
                for tp, records in batch.items():
                    seen.update(r.value for r in records if r.value is not None)
                    await consumer.commit({tp: records[-1].offset + 1})
        assert {tp.partition for tp in consumer.assignment()} == set(range(PARTITIONS))
        committed = {p: await consumer.committed(TopicPartition(topic, p))
                     for p in range(PARTITIONS)}
    finally:
        await consumer.stop()
    assert seen == {f"v{i}".encode() for i in range(COUNT)}
    assert sum(c or 0 for c in committed.values()) == COUNT

    again = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=group,
                             enable_auto_commit=False, auto_offset_reset="earliest")
    await again.start()
    try:
        # Wait until the new member owns every partition, then poll a while.
        async with asyncio.timeout(30):
            while len(again.assignment()) < PARTITIONS:
                await again.getmany(timeout_ms=200)
        leftovers: list[object] = []
        for _ in range(5):
            batch = await again.getmany(timeout_ms=300)
            leftovers.extend(r for records in batch.values() for r in records)
    finally:
        await again.stop()
    assert leftovers == []


async def test_postgres_copy_round_trip(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        table = f"harness_{uuid.uuid4().hex[:8]}"
        await conn.execute(f"CREATE TABLE {table} (id text PRIMARY KEY, n int NOT NULL)")
        rows = [(f"id-{i}", i) for i in range(1_000)]
        await conn.copy_records_to_table(table, records=rows, columns=["id", "n"])
        back = await conn.fetch(f"SELECT id, n FROM {table} ORDER BY n")
        assert [(r["id"], r["n"]) for r in back] == rows
    finally:
        await conn.close()
