"""Whatever an outside producer puts on the wire, the real service stores
the valid events once, dead-letters everything else with a reason, commits
to the end and exits 0 — it never crashes, hangs or drops a record quietly.

Records come from `wire-producer` (franz-go, `tests.integration.wire`): any
bytes in keys, values, header names and values, nulls, large sizes, every
codec — drawn by hypothesis and interleaved with valid events.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from devtools.harness import (
    Service,
    committed_all,
    committed_offsets,
    read_topic,
    stored_ids,
    wait_until,
)
from devtools.kafka import LocalKafka, create_topics
from schemas.samples import sample_event
from tests.integration.wire import CODECS, WireRecord, produce_raw
from tests.support.kafka import NewTopicFactory

pytestmark = pytest.mark.integration

PARTITIONS = 3
DLQ_LIMIT = 16 * 1024  # the dead-letter topic takes less than the source does
BIG = 512 * 1024  # the largest value drawn: far over DLQ_LIMIT, within the topic's limit
NOW_MS = int(time.time() * 1000)


def _blob(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


names = st.one_of(st.binary(max_size=12), st.sampled_from([b"\xff\xfe", b"\xc3\x28", b""]))
header_lists = st.one_of(
    st.lists(st.tuples(names, st.none() | st.binary(max_size=40)), max_size=6),
    # Thousands of headers on one record.
    st.integers(1000, 3000).map(lambda n: [(f"h{i}".encode(), b"x") for i in range(n)]),
)


def sized(*sizes: int) -> st.SearchStrategy[bytes]:
    return st.tuples(st.sampled_from(sizes), st.integers(0, 2**32)).map(lambda t: _blob(*t))


# Key and value together stay within the source topic's limit (1 MiB).
poison = st.builds(
    WireRecord,
    key=st.none() | st.binary(max_size=40) | sized(0, 1, 100, 5_000, 40_000),
    value=st.none() | st.binary(max_size=300) | sized(0, 1, 100, 5_000, 40_000, BIG),
    headers=header_lists.map(tuple),
    timestamp_ms=st.sampled_from([None, 0, 1, NOW_MS - 10 * 365 * 86_400_000]),
)


def draw_poison(examples: int) -> list[WireRecord]:
    """Records drawn by hypothesis (every example's, kept together)."""
    drawn: list[WireRecord] = []

    @settings(max_examples=examples, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(st.lists(poison, min_size=1, max_size=12))
    def draw(records: list[WireRecord]) -> None:
        drawn.extend(records)

    draw()
    return drawn


def valid_record(n: int, partition: int) -> tuple[WireRecord, str]:
    event = sample_event(n)
    return WireRecord(key=event["data"]["order_id"].encode(), value=orjson.dumps(event),
                      headers=((b"source", b"wire-test"),), partition=partition), event["id"]


async def _topics(new_topic: NewTopicFactory, partitions: int = PARTITIONS,
                  dlq_limit: int = DLQ_LIMIT) -> tuple[str, str]:
    """A source topic and its dead-letter topic, which takes less."""
    return (await new_topic("wire", partitions),
            await new_topic("wire-dlq", 1, **{"max.message.bytes": str(dlq_limit)}))


def _headers(record: Any) -> dict[str, bytes]:
    return {k: v or b"" for k, v in record.headers}


async def test_any_record_from_an_outside_producer_is_stored_or_dead_lettered(
        kafka_bootstrap: str, db_dsn: str, new_topic: NewTopicFactory) -> None:
    topic, dlq = await _topics(new_topic)
    bad = draw_poison(examples=25)
    # Pinned cases the draw may miss: a keyless tombstone, a keyless record
    # too large for the dead-letter topic, a bad header name on a valid event.
    tombstone = WireRecord(key=None, value=None)
    event = sample_event(10**6)
    bad_name = WireRecord(key=b"k", value=orjson.dumps(event), headers=((b"\xff\xfe", b"v"),))
    bad += [tombstone, WireRecord(key=None, value=_blob(BIG, 1)), bad_name]
    valid: set[str] = set()
    poison_at: set[tuple[int, int]] = set()
    chunks = [bad[i::len(CODECS)] for i in range(len(CODECS))]
    n = 0
    for codec, chunk in zip(CODECS, chunks, strict=True):
        records: list[WireRecord] = []
        is_poison: list[bool] = []
        for record in chunk:
            partition = n % PARTITIONS
            good, event_id = valid_record(n, partition)
            valid.add(event_id)
            records += [good, WireRecord(record.key, record.value, record.headers, partition,
                                         record.timestamp_ms)]
            is_poison += [False, True]
            n += 1
        placed = await asyncio.to_thread(produce_raw, kafka_bootstrap, topic, records, codec)
        poison_at.update(p for p, bad_one in zip(placed, is_poison, strict=True) if bad_one)

    # Half the traffic is bad on purpose: the dead-letter breaker must not trip.
    service = Service(bootstrap_servers=kafka_bootstrap, topics=topic, dlq_topic=dlq,
                      sink_url=db_dsn, group_id=f"g-{uuid.uuid4().hex[:8]}",
                      dlq_breaker_ratio="1.0", dlq_breaker_consecutive="1000000").start()
    try:
        group = service.env["CONSUMER_GROUP_ID"]

        await wait_until(lambda: committed_all(kafka_bootstrap, group, topic), 180,
                         "offsets committed to the end", service)
        assert service.alive
    finally:
        code = service.terminate()
    assert code == 0, service.log_tail()
    ids = await stored_ids(db_dsn)
    assert len(ids) == len(set(ids)) == len(valid)
    assert set(ids) == valid
    letters = await read_topic(kafka_bootstrap, dlq)
    origins = {(int(_headers(r)["dlq.original.partition"]),
                int(_headers(r)["dlq.original.offset"])) for r in letters}
    assert origins == poison_at
    assert all(len(r.value or b"") + len(r.key or b"") <= DLQ_LIMIT for r in letters)
    print(f"\n{len(valid)} valid events and {len(poison_at)} other records over "
          f"{', '.join(CODECS)}: all stored or dead-lettered")
    by_reason: dict[str, int] = {}
    for r in letters:
        reason = _headers(r)["dlq.error.message"].decode().split(":")[0]
        by_reason[reason] = by_reason.get(reason, 0) + 1
    print("dead letters by reason:", dict(sorted(by_reason.items())))
    undecodable = sorted((r for r in letters
                          if _headers(r)["dlq.error.message"].startswith(b"undecodable")),
                         key=lambda r: len(r.headers))
    assert undecodable, "the bad header name was not dead-lettered as undecodable"
    nulls = sorted((r for r in letters if _headers(r).get("dlq.value.null") == b"true"),
                   key=lambda r: len(r.headers))
    assert nulls, "the keyless tombstone was not dead-lettered"
    assert nulls[0].key is None
    assert nulls[0].value == b""
    for title, sample in (("undecodable", undecodable[0]), ("keyless tombstone", nulls[0])):
        print(f"sample dead letter ({title}): key={sample.key!r} value={sample.value[:40]!r}")
        for k, v in sample.headers:
            if k != "dlq.error.stack":
                print(f"  {k}: {(v or b'')[:120]!r}")


async def test_records_of_an_aborted_transaction_are_never_stored(
        kafka_bootstrap: str, db_dsn: str, new_topic: NewTopicFactory) -> None:
    topic, dlq = await _topics(new_topic)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap,
                                transactional_id=f"tx-{uuid.uuid4().hex[:8]}")
    await producer.start()
    aborted: set[str] = set()
    kept: set[str] = set()
    try:
        for n, ids in ((0, aborted), (100, kept)):
            await producer.begin_transaction()
            for i in range(n, n + 20):
                event = sample_event(i)
                ids.add(event["id"])
                await producer.send(topic, orjson.dumps(event), partition=i % PARTITIONS,
                                    key=event["data"]["order_id"].encode())
            await producer.flush()  # on the broker, then aborted or committed
            if ids is aborted:
                await producer.abort_transaction()
            else:
                await producer.commit_transaction()
    finally:
        await producer.stop()
    service = Service(bootstrap_servers=kafka_bootstrap, topics=topic, dlq_topic=dlq,
                      sink_url=db_dsn, group_id=f"g-{uuid.uuid4().hex[:8]}").start()
    try:
        group = service.env["CONSUMER_GROUP_ID"]

        async def stored_kept() -> bool:
            return set(await stored_ids(db_dsn)) >= kept

        await wait_until(stored_kept, 120, "the committed transaction stored", service)

        await wait_until(lambda: committed_all(kafka_bootstrap, group, topic), 60,
                         "offsets committed to the end", service)
    finally:
        code = service.terminate()
    assert code == 0, service.log_tail()
    assert set(await stored_ids(db_dsn)) == kept


async def test_a_dead_letter_topic_refusing_every_form_sticks_only_that_partition_loudly(
        kafka_bootstrap: str, db_dsn: str, new_topic: NewTopicFactory,
        kafka_admin: AIOKafkaAdminClient) -> None:
    """A dead-letter topic whose limit is below the `dlq.*` headers alone:
    the record cannot go out in any form. Its partition stops at it — said in
    a CRITICAL line naming the offset, counted, readiness down — while the
    other partition goes on; once the topic takes it, it goes out and the
    partition moves on, without a restart."""
    topic, dlq = await _topics(new_topic, partitions=2, dlq_limit=200)
    records, other = [], set()
    for i, partition in enumerate([0, 0, 0, 1, 1, 1]):
        if i == 1:
            records.append(WireRecord(key=b"k", value=b"not json", partition=0))
            continue
        good, event_id = valid_record(i, partition)
        if partition == 1 or i == 0:
            other.add(event_id)
        records.append(good)
    await asyncio.to_thread(produce_raw, kafka_bootstrap, topic, records, "zstd")
    service = Service(bootstrap_servers=kafka_bootstrap, topics=topic, dlq_topic=dlq,
                      sink_url=db_dsn, group_id=f"g-{uuid.uuid4().hex[:8]}",
                      log_level="INFO").start()
    group = service.env["CONSUMER_GROUP_ID"]
    try:
        async def others_stored() -> bool:
            return set(await stored_ids(db_dsn)) >= other

        await wait_until(others_stored, 120, "the events around the refused one stored",
                         service)

        def refusal_counted() -> bool:
            return any(line.startswith("consumer_dlq_refused_total ") and
                       float(line.split()[1]) >= 1 for line in service.metrics().splitlines())

        await wait_until(refusal_counted, 60, "the refusal counted", service)

        async def stuck_at_the_refused_one() -> bool:
            return await committed_offsets(kafka_bootstrap, group, topic, 2) == {0: 1, 1: 3}

        await wait_until(stuck_at_the_refused_one, 60, "partition 1 to the end, 0 up to the "
                         "refused record", service)
        for _ in range(4):  # it stays there: nothing is skipped
            await asyncio.sleep(0.5)
            assert await committed_offsets(kafka_bootstrap, group, topic, 2) == {0: 1, 1: 3}
        assert service.alive
        log = service.log_tail(50_000)
        assert "[0]@1 cannot be dead-lettered" in log
        assert "its partition is stuck at this offset" in log

        await kafka_admin.alter_configs([ConfigResource(
            ConfigResourceType.TOPIC, dlq, configs={"max.message.bytes": "1048588"})])

        await wait_until(lambda: committed_all(kafka_bootstrap, group, topic), 60,
                         "the partition moving on once the topic takes it",
                         service)
    finally:
        code = service.terminate()
    assert code == 0, service.log_tail()
    [letter] = await read_topic(kafka_bootstrap, dlq)
    assert letter.value == b"not json"  # the whole record, once it fits


@pytest.mark.kafka  # a broker of its own: this test crashes and restarts it
async def test_a_failed_periodic_commit_is_retried_without_new_messages(
        db_dsn: str) -> None:
    """The broker crashes just as the first periodic commit is due and comes
    back on the same port; the commit must then land although nothing new
    completes (an idle partition must not keep a stale committed offset)."""
    broker = LocalKafka()
    try:
        bootstrap = await asyncio.to_thread(broker.start)
        topic, dlq = f"wire-{uuid.uuid4().hex[:10]}", f"wire-dlq-{uuid.uuid4().hex[:10]}"
        await create_topics(bootstrap, {topic: PARTITIONS, dlq: 1})
        records = [valid_record(i, i % PARTITIONS)[0] for i in range(30)]
        await asyncio.to_thread(produce_raw, bootstrap, topic, records, "lz4")
        # Sessions outlive the outage: the member keeps its partitions, so no
        # revocation commits for it — only the periodic commit can.
        service = Service(bootstrap_servers=bootstrap, topics=topic, dlq_topic=dlq,
                          sink_url=db_dsn, group_id=f"g-{uuid.uuid4().hex[:8]}",
                          commit_interval="4", commit_every="1000000", commit_timeout="2",
                          session_timeout_ms="60000", heartbeat_interval_ms="3000").start()
        try:
            async def stored() -> bool:
                return len(await stored_ids(db_dsn)) == len(records)

            await wait_until(stored, 120, "all stored", service, interval=0.1)
            await asyncio.to_thread(broker.kill)

            def commit_failed() -> bool:
                tail = service.log_tail(50_000)
                return "commit timed out" in tail or "commit failed" in tail

            await wait_until(commit_failed, 30, "the periodic commit to fail", service)
            await asyncio.to_thread(broker.start)
            group = service.env["CONSUMER_GROUP_ID"]

            await wait_until(lambda: committed_all(bootstrap, group, topic), 60,
                             "the failed commit retried", service)
            assert "partitions revoked" not in service.log_tail(50_000)
        finally:
            code = service.terminate()
        assert code == 0, service.log_tail()
    finally:
        await asyncio.to_thread(broker.stop)
