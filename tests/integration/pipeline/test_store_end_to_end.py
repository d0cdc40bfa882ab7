"""The main job end to end, against a real broker and a real PostgreSQL:
events in, rows out, nothing lost, nothing doubled — also across a SIGKILL."""

from __future__ import annotations

import time
import uuid

import pytest

from devtools.harness import (
    Service,
    committed_all,
    count_rows,
    create_topics,
    dlq_origins,
    produce,
    read_topic,
    stored_ids,
    wait_until,
)

pytestmark = pytest.mark.integration

EVENTS = 100_000
INVALID_EVERY = 100  # 1 %


def service_for(bootstrap: str, topic: str, dlq: str, dsn: str) -> Service:
    return Service(bootstrap_servers=bootstrap, topics=topic, dlq_topic=dlq, sink_url=dsn,
                   group_id=f"g-{uuid.uuid4().hex[:8]}", shutdown_timeout="30")


async def test_100k_events_exactly_the_valid_ones_stored_invalid_dead_lettered(
        kafka_bootstrap: str, db_dsn: str) -> None:
    topic, dlq = await create_topics(kafka_bootstrap)
    traffic = await produce(kafka_bootstrap, topic, EVENTS, invalid_every=INVALID_EVERY)
    assert traffic.invalid == EVENTS // INVALID_EVERY
    service = service_for(kafka_bootstrap, topic, dlq, db_dsn).start()
    began = time.monotonic()
    try:
        async def all_stored() -> bool:
            return await count_rows(db_dsn) >= len(traffic.valid)

        await wait_until(all_stored, 300, f"{len(traffic.valid)} rows", service)
        elapsed = time.monotonic() - began
        print(f"\n{EVENTS} events stored in {elapsed:.1f}s including start-up "
              f"({len(traffic.valid) / elapsed:,.0f} rows/s)")
        group = service.env["CONSUMER_GROUP_ID"]

        await wait_until(lambda: committed_all(kafka_bootstrap, group, topic), 60,
                         "offsets committed to the end", service)
    finally:
        code = service.terminate()
    assert code == 0, service.log_tail()
    ids = await stored_ids(db_dsn)
    assert len(ids) == len(set(ids)) == len(traffic.valid)
    assert set(ids) == traffic.valid
    dead = await read_topic(kafka_bootstrap, dlq)
    assert len(dead) == traffic.invalid
    assert all(rec.key.startswith(b"bad-") for rec in dead)  # the original key kept
    assert len(set(dlq_origins(dead))) == traffic.invalid


async def test_sigkill_mid_stream_then_restart_loses_and_doubles_nothing(
        kafka_bootstrap: str, db_dsn: str) -> None:
    topic, dlq = await create_topics(kafka_bootstrap)
    traffic = await produce(kafka_bootstrap, topic, EVENTS, invalid_every=INVALID_EVERY)
    first = service_for(kafka_bootstrap, topic, dlq, db_dsn).start()
    try:
        async def some_stored() -> bool:
            return await count_rows(db_dsn) >= len(traffic.valid) // 3

        await wait_until(some_stored, 300, "a third of the rows", first, interval=0.1)
    finally:
        first.kill()  # mid-stream: no drain, no commit of the tail
    at_kill = await count_rows(db_dsn)
    assert at_kill < len(traffic.valid), "the kill came too late to be mid-stream"

    # Same group: the restart resumes from the last commit and redelivers the rest.
    second = first.start()
    try:
        async def all_stored() -> bool:
            return await count_rows(db_dsn) >= len(traffic.valid)

        await wait_until(all_stored, 300, "all rows after the restart", second)

        group = first.env["CONSUMER_GROUP_ID"]
        await wait_until(lambda: committed_all(kafka_bootstrap, group, topic), 60,
                         "offsets committed to the end", second)
    finally:
        code = second.terminate()
    assert code == 0, second.log_tail()
    ids = await stored_ids(db_dsn)
    assert len(ids) == len(set(ids))
    assert set(ids) == traffic.valid  # nothing lost, nothing extra
    # Dead letters are at-least-once across a crash: every invalid record is
    # there, and nothing else.
    origins = dlq_origins(await read_topic(kafka_bootstrap, dlq))
    assert len(set(origins)) == traffic.invalid
    print(f"\nkilled at {at_kill} rows; dead letters {len(origins)} "
          f"({len(origins) - traffic.invalid} redelivered)")
