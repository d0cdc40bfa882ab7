"""Sink failures end to end: a 20 s PostgreSQL outage mid-stream (no crash,
partitions pause, recovery by itself, nothing lost or doubled) and poison rows
isolated by bisection (dead-lettered, every other row stored)."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import Any

import asyncpg
import pytest

from devtools.harness import (
    Service,
    count_rows,
    create_topics,
    dlq_origins,
    produce,
    read_topic,
    stored_ids,
    wait_until,
)
from devtools.postgres import LocalPostgres

pytestmark = pytest.mark.integration

OUTAGE = 20.0



def paused_partitions(service: Service) -> float:
    try:
        text = service.metrics()
    except OSError:
        return 0.0
    match = re.search(r"^consumer_paused_partitions(?:\{[^}]*\})? ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


async def test_postgres_outage_mid_stream_recovers_by_itself(
        kafka_bootstrap: str, own_postgres: LocalPostgres) -> None:
    dsn = own_postgres.dsn
    topic, dlq = await create_topics(kafka_bootstrap)
    service = Service(bootstrap_servers=kafka_bootstrap, topics=topic, dlq_topic=dlq,
                      sink_url=dsn, group_id=f"g-{uuid.uuid4().hex[:8]}",
                      max_in_flight="2000").start()
    try:
        before = await produce(kafka_bootstrap, topic, 5_000)

        async def first_stored() -> bool:
            return await count_rows(dsn) >= len(before.valid)

        await wait_until(first_stored, 120, "rows before the outage", service)

        # Down for OUTAGE seconds while traffic keeps coming.
        own_postgres.stop_server()
        down_at = time.monotonic()
        during = await produce(kafka_bootstrap, topic, 20_000, start=5_000, rate=2_000)
        paused = 0.0
        while time.monotonic() - down_at < OUTAGE:
            assert service.alive, f"service died during the outage:\n{service.log_tail()}"
            paused = max(paused, paused_partitions(service))
            await asyncio.sleep(1)
        assert service.alive, service.log_tail()
        own_postgres.start_server()
        print(f"\noutage {time.monotonic() - down_at:.1f}s, max paused partitions {paused}")

        expected = before.valid | during.valid

        async def all_stored() -> bool:
            return await count_rows(dsn) >= len(expected)

        await wait_until(all_stored, 180, "all rows after the outage", service)
    finally:
        code = service.terminate()
    assert code == 0, service.log_tail()
    ids = await stored_ids(dsn)
    assert len(ids) == len(set(ids))
    assert set(ids) == expected
    assert await read_topic(kafka_bootstrap, dlq, idle=1.0) == []  # nothing dead-lettered


async def test_poison_rows_are_bisected_out_and_dead_lettered(
        kafka_bootstrap: str, db_dsn: str) -> None:
    # The database refuses some rows (a CHECK the service does not know about);
    # the migration keeps an existing table as it is.
    conn: asyncpg.Connection[Any] = await asyncpg.connect(db_dsn)
    try:
        await conn.execute("""
            CREATE TABLE events (
                id text PRIMARY KEY CHECK (id NOT LIKE 'poison-%'), type text NOT NULL,
                version integer NOT NULL, occurred_at timestamptz NOT NULL,
                data jsonb NOT NULL, source text, topic text NOT NULL,
                partition integer NOT NULL, "offset" bigint NOT NULL, key bytea,
                stored_at timestamptz NOT NULL DEFAULT now())""")
    finally:
        await conn.close()
    topic, dlq = await create_topics(kafka_bootstrap)
    traffic = await produce(kafka_bootstrap, topic, 10_000, poison_every=1_000,
                            invalid_every=997)
    assert len(traffic.poison) == 10
    service = Service(bootstrap_servers=kafka_bootstrap, topics=topic, dlq_topic=dlq,
                      sink_url=db_dsn, group_id=f"g-{uuid.uuid4().hex[:8]}").start()
    try:
        async def all_stored() -> bool:
            return await count_rows(db_dsn) >= len(traffic.valid)

        await wait_until(all_stored, 180, "the good rows", service)
        expected_dead = traffic.invalid + len(traffic.poison)

        async def all_dead() -> bool:
            return len(await read_topic(kafka_bootstrap, dlq, idle=0.5)) >= expected_dead

        await wait_until(all_dead, 120, "the dead letters", service, interval=1)
    finally:
        code = service.terminate()
    assert code == 0, service.log_tail()
    assert set(await stored_ids(db_dsn)) == traffic.valid
    dead = await read_topic(kafka_bootstrap, dlq)
    assert len(dead) == expected_dead
    assert len(set(dlq_origins(dead))) == expected_dead
    poisoned = {rec.value for rec in dead if b"poison-" in rec.value}
    assert len(poisoned) == len(traffic.poison)
