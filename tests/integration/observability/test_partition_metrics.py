"""Per-partition metrics stay honest: a member stops listing partitions it no
longer owns, and lag keeps counting while a partition is paused (its high
watermark no longer comes with fetches)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from devtools.harness import (
    Service,
    create_topics,
    terminate_all,
    wait_until,
)
from schemas.samples import sample_event

pytestmark = pytest.mark.integration

Series = dict[tuple[str, str], float]  # (topic, partition) -> value


def scrape(svc: Service) -> dict[str, Series | float]:
    """metric name -> value, or -> {(topic, partition): value} when labelled so."""
    out: dict[str, Series | float] = {}
    for family in text_string_to_metric_families(svc.metrics()):
        for sample in family.samples:
            if "partition" in sample.labels:
                series = out.setdefault(sample.name, {})
                assert isinstance(series, dict)
                series[(sample.labels["topic"], sample.labels["partition"])] = sample.value
            elif not sample.labels:
                out[sample.name] = sample.value
    return out


def series(metrics: dict[str, Series | float], name: str) -> Series:
    found = metrics.get(name, {})
    assert isinstance(found, dict)
    return found


async def send(bootstrap: str, topic: str, per_partition: dict[int, list[str]]) -> None:
    """Valid events with the given ids, to the given partitions (named, not
    picked by key as `devtools.harness.produce` does: the test reads each
    partition's series)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        n = 0
        for partition, ids in per_partition.items():
            for event_id in ids:
                event = sample_event(n)
                event["id"] = event_id
                n += 1
                await producer.send(topic, orjson.dumps(event), partition=partition)
        await producer.flush()
    finally:
        await producer.stop()


def ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{uuid.uuid4().hex}" for _ in range(count)]


async def test_revoked_partitions_leave_the_first_members_metrics(
        kafka_bootstrap: str) -> None:
    topic, dlq = await create_topics(kafka_bootstrap, partitions=4)
    group = f"g-{uuid.uuid4().hex[:8]}"
    settings = {"bootstrap_servers": kafka_bootstrap, "topics": topic, "dlq_topic": dlq,
                "group_id": group, "sink_url": "none", "commit_interval": "0.2"}
    first = Service(**settings).start()
    second = Service(**settings)
    try:
        await send(kafka_bootstrap, topic, {p: ids("e-", 5) for p in range(4)})
        every = {(topic, str(p)) for p in range(4)}

        def first_lists_all() -> bool:
            m = scrape(first)
            return all(set(series(m, name)) == every for name in
                       ("consumer_lag", "consumer_lag_seconds", "consumer_committed_offset"))

        await wait_until(first_lists_all, 60, "the first member to list all 4 partitions", first)

        second.start()

        def first_gave_some_up() -> bool:
            m = scrape(first)
            return 0 < float(m.get("consumer_assigned_partitions", 0)) < 4  # type: ignore[arg-type]

        await wait_until(first_gave_some_up, 60, "a rebalance onto the second member", first)
        await asyncio.sleep(1.5)  # a few metrics-routine ticks after the assignment
        m = scrape(first)
        kept = int(m["consumer_assigned_partitions"])  # type: ignore[arg-type]
        for name in ("consumer_lag", "consumer_lag_seconds", "consumer_committed_offset"):
            listed = set(series(m, name))
            assert len(listed) <= kept, (name, listed, kept)
        # The second member reports the partitions it took once it has work on them.
        await send(kafka_bootstrap, topic, {p: ids("e-", 3) for p in range(4)})

        def both_cover_all() -> bool:
            a = set(series(scrape(first), "consumer_lag"))
            b = set(series(scrape(second), "consumer_lag"))
            return a | b == every and not a & b

        await wait_until(both_cover_all, 60, "the two members to split the partitions", second)
    finally:
        codes = terminate_all(second, first)  # both, before asserting: neither leaks
    assert codes == [0, 0], (codes, first.log_tail(), second.log_tail())


async def test_lag_keeps_counting_while_partitions_are_paused(kafka_bootstrap: str) -> None:
    topic, dlq = await create_topics(kafka_bootstrap, partitions=2)
    svc = Service(bootstrap_servers=kafka_bootstrap, topics=topic, dlq_topic=dlq,
                  group_id=f"g-{uuid.uuid4().hex[:8]}", sink_url="none",
                  handler="tests.integration.observability.handlers:block",
                  max_in_flight="4", concurrency="4", ordering="unordered",
                  commit_interval="0.2").start()
    try:
        # Done and committed first, then two stuck records per partition fill
        # the in-flight limit (4): both partitions pause.
        await send(kafka_bootstrap, topic, {p: ids("ok-", 3) for p in range(2)})

        def committed_three() -> bool:
            committed = series(scrape(svc), "consumer_committed_offset")
            return committed == {(topic, "0"): 3.0, (topic, "1"): 3.0}

        await wait_until(committed_three, 60, "the first records committed", svc)
        landed = series(scrape(svc), "consumer_last_commit_timestamp_seconds")
        assert set(landed) == {(topic, "0"), (topic, "1")}, landed
        assert all(abs(time.time() - at) < 30 for at in landed.values()), landed
        await send(kafka_bootstrap, topic, {p: ids("block-", 2) for p in range(2)})

        def paused_with_lag(lag: float) -> Callable[[], bool]:
            def check() -> bool:
                m = scrape(svc)
                return (m.get("consumer_paused_partitions") == 2.0
                        and series(m, "consumer_lag") == {(topic, "0"): lag, (topic, "1"): lag})
            return check

        await wait_until(paused_with_lag(2.0), 60, "both partitions paused with lag 2", svc)
        # Produced while paused: never fetched, still counted.
        await send(kafka_bootstrap, topic, {p: ids("late-", 50) for p in range(2)})
        await wait_until(paused_with_lag(52.0), 30, "lag 52 on both paused partitions", svc)
        # The stuck records are fetched: their age is the time lag, and it grows.
        first = series(scrape(svc), "consumer_lag_seconds")

        def grown() -> bool:
            later = series(scrape(svc), "consumer_lag_seconds")
            return all(later[key] >= first[key] + 1.5 for key in ((topic, "0"), (topic, "1")))

        await wait_until(grown, 30, f"time lag to grow by 1.5 s from {first}", svc)
        # Meanwhile nothing moved: still paused, the count lag unchanged.
        assert paused_with_lag(52.0)(), scrape(svc)
        m = scrape(svc)  # per partition: paused, its two stuck records in flight
        both = {(topic, "0"), (topic, "1")}
        assert series(m, "consumer_partition_paused") == dict.fromkeys(both, 1.0), m
        assert series(m, "consumer_partition_in_flight_messages") == dict.fromkeys(both, 2.0), m
        # Nothing committed since the first three: the last commit only ages.
        assert series(m, "consumer_last_commit_timestamp_seconds") == landed, m
    finally:
        if svc.alive:
            svc.kill()  # the stuck handler never returns: the crash case


async def test_lag_reaches_zero_after_a_transaction_marker(kafka_bootstrap: str) -> None:
    # A committed transaction ends with a marker: the high watermark is one past
    # the last record. Once the records are done, the commit moves past the
    # marker too (to the consumer's position), so the committed offset reaches
    # the end and the lag 0.
    topic, dlq = await create_topics(kafka_bootstrap, partitions=1)
    svc = Service(bootstrap_servers=kafka_bootstrap, topics=topic, dlq_topic=dlq,
                  group_id=f"g-{uuid.uuid4().hex[:8]}", sink_url="none",
                  commit_interval="0.2").start()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap,
                                transactional_id=f"tx-{uuid.uuid4().hex[:8]}")
    await producer.start()
    try:
        async with producer.transaction():
            for n in range(5):
                await producer.send(topic, orjson.dumps(sample_event(n)), partition=0)

        def caught_up() -> bool:
            m = scrape(svc)
            return (series(m, "consumer_committed_offset").get((topic, "0")) == 6.0
                    and series(m, "consumer_lag").get((topic, "0")) == 0.0
                    and series(m, "consumer_lag_seconds").get((topic, "0")) == 0.0)

        await wait_until(caught_up, 60, "five records committed and lag 0 past the marker", svc)
    finally:
        await producer.stop()
        code = svc.terminate()
    assert code == 0, svc.log_tail()
