"""Exactly-once through a crash: a non-idempotent write — a counter per key,
incremented by the `CONSUMER_SINK_APPLY` hook inside the sink's transaction —
ends exact after a SIGKILL that left the database ahead of Kafka's committed
offsets (the case at-least-once delivery counts twice)."""

from __future__ import annotations

from collections import Counter

import pytest

from devtools.harness import Service, committed_all, committed_offsets, produce, wait_until
from tests.integration.exactly_once.hooks import COUNTERS
from tests.integration.sinks.dbs import fetch, fresh_database
from tests.support.kafka import NewTopicFactory

pytestmark = pytest.mark.integration

PARTITIONS = 3
EVENTS = 6_000
KEYS = 40


def member(bootstrap: str, topic: str, dsn: str, **extra: str) -> Service:
    return Service(bootstrap_servers=bootstrap, topics=topic, group_id=f"g-{topic}",
                   sink_url=dsn, delivery="exactly_once",
                   sink_apply="tests.integration.exactly_once.hooks:count_keys",
                   batch_max_items="200", log_level="INFO", **extra)


async def counters(dsn: str) -> dict[str, int]:
    return {bytes(r["key"]).decode(): r["n"] for r in await fetch(dsn, "SELECT * FROM counters")}


async def test_a_counter_ends_exact_after_a_crash_between_the_two_commits(
        kafka_bootstrap: str, pg_dsn: str, new_topic: NewTopicFactory) -> None:
    topic = await new_topic("eos-crash", partitions=PARTITIONS)
    group = f"g-{topic}"
    dsn = await fresh_database(pg_dsn, "eos_crash")
    await fetch(dsn, COUNTERS)
    await produce(kafka_bootstrap, topic, EVENTS, keys=KEYS)
    expected = Counter(f"k{i % KEYS}" for i in range(EVENTS))

    # Kafka commits nothing before the kill: the database alone knows what is done.
    first = member(kafka_bootstrap, topic, dsn, commit_interval="600", commit_every="1000000")
    second = member(kafka_bootstrap, topic, dsn, commit_interval="0.5")
    try:
        first.start()

        async def some_counted() -> bool:
            return sum((await counters(dsn)).values()) >= EVENTS // 4

        await wait_until(some_counted, 90, "the first rows counted", first)
        first.kill()
        kafka = await committed_offsets(kafka_bootstrap, group, topic, PARTITIONS)
        done = sum((await counters(dsn)).values())
        assert sum(kafka.values()) == 0 < done, "the crash left the database ahead of Kafka"

        second.start()
        await wait_until(lambda: committed_all(kafka_bootstrap, group, topic), 120,
                         "everything committed after the restart", second)
        assert second.terminate() == 0, second.log_tail()
    finally:
        for svc in (first, second):
            if svc.alive:
                svc.kill()
    assert "partition claimed" in second.log_tail(1_000_000)
    assert await counters(dsn) == dict(expected), second.log_tail()
    rows = await fetch(dsn, "SELECT count(*) AS n FROM events")
    assert rows[0]["n"] == EVENTS
