"""Retry and dead-letter through the real service (`consumer run`): transient
errors recover, fatal ones skip retries, exhausted ones carry their attempts;
the group commits past them once the dead-letter topic has them — and, when
the dead-letter topic cannot be written, never does."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from devtools.harness import Service, committed_offsets, read_topic, wait_until
from tests.integration.gates.support import headers_of
from tests.support.kafka import NewTopicFactory, event_value, produce_values

pytestmark = pytest.mark.integration

HANDLER = "tests.integration.gates.handlers:by_id"


def service(bootstrap: str, topic: str, dlq: str, group: str, **extra: str) -> Service:
    return Service(bootstrap_servers=bootstrap, topics=topic, dlq_topic=dlq, group_id=group,
                   handler=HANDLER, sink_url="none", retry_max_attempts="3",
                   retry_base_delay="0.05", retry_max_delay="0.2", commit_interval="0.2",
                   dlq_send_timeout="2", shutdown_timeout="10", **extra)


async def test_transient_recover_fatal_and_exhausted_dead_lettered(
        kafka_bootstrap: str, new_topic: NewTopicFactory) -> None:
    topic = await new_topic("gates-retry")
    dlq = await new_topic("gates-retry-dlq")
    plan = ["ok", "transient", "fatal", "ok", "exhaust", "transient", "fatal", "exhaust", "ok"]
    produced = [event_value(i, prefix) for i, prefix in enumerate(plan)]
    offsets = await produce_values(kafka_bootstrap, topic, [v for _, v in produced])
    group = f"g-{uuid.uuid4().hex[:8]}"
    svc = service(kafka_bootstrap, topic, dlq, group).start()
    try:
        async def all_committed() -> bool:
            return await committed_offsets(kafka_bootstrap, group, topic, 1) == {
                0: offsets[-1] + 1}

        await wait_until(all_committed, 60, "every offset committed", svc)
        assert svc.terminate() == 0
    finally:
        if svc.alive:
            svc.kill()

    letters = await read_topic(kafka_bootstrap, dlq, idle=1.0)
    by_offset = {int(headers_of(r)["dlq.original.offset"]): r for r in letters}
    expected = {offsets[i]: p for i, p in enumerate(plan) if p in ("fatal", "exhaust")}
    assert sorted(by_offset) == sorted(expected)  # transient ones recovered: not here
    for offset, prefix in expected.items():
        rec = by_offset[offset]
        h = headers_of(rec)
        assert rec.key == b"k"
        assert rec.value == produced[offsets.index(offset)][1]
        assert h["dlq.original.topic"] == topic
        assert h["dlq.original.partition"] == "0"
        assert h["dlq.consumer.group"] == group
        assert int(h["dlq.original.timestamp"]) > 0
        assert h["dlq.first_failure"] <= h["dlq.last_failure"]
        assert "Traceback" in h["dlq.error.stack"]
        if prefix == "fatal":
            assert (h["dlq.error.type"], h["dlq.attempts"]) == ("FatalError", "1")
            assert h["dlq.error.message"].startswith("cannot handle fatal-")
        else:
            assert (h["dlq.error.type"], h["dlq.attempts"]) == ("TransientError", "3")
            assert h["dlq.error.message"] == "still down"


async def test_unwritable_dead_letter_topic_holds_the_commit(
        kafka_bootstrap: str, new_topic: NewTopicFactory,
        kafka_admin: AIOKafkaAdminClient) -> None:
    topic = await new_topic("gates-hold")
    # Every dead-letter record (headers include a stack trace) is over this
    # limit: the broker refuses each send until the test raises it.
    dlq = await new_topic("gates-hold-dlq", **{"max.message.bytes": "200"})
    plan = ["ok", "ok", "fatal", "ok", "ok", "ok"]
    offsets = await produce_values(kafka_bootstrap, topic,
                                   [event_value(i, p)[1] for i, p in enumerate(plan)])
    poison = offsets[2]
    group = f"g-{uuid.uuid4().hex[:8]}"
    svc = service(kafka_bootstrap, topic, dlq, group, ordering="unordered").start()
    try:
        async def reached_poison() -> bool:
            return await committed_offsets(kafka_bootstrap, group, topic, 1) == {0: poison}

        await wait_until(reached_poison, 60, "offsets before the poison committed", svc)
        # The later offsets are handled (unordered) but the poison one is not
        # done: for several commit intervals nothing moves past it.
        for _ in range(8):
            await asyncio.sleep(0.5)
            assert svc.alive
            assert await committed_offsets(kafka_bootstrap, group, topic, 1) == {0: poison}
        assert await read_topic(kafka_bootstrap, dlq, idle=0.5) == []

        await kafka_admin.alter_configs([ConfigResource(
            ConfigResourceType.TOPIC, dlq, configs={"max.message.bytes": "1048588"})])

        async def all_committed() -> bool:
            return await committed_offsets(kafka_bootstrap, group, topic, 1) == {
                0: offsets[-1] + 1}

        await wait_until(all_committed, 60, "commit past the poison once dead-lettered", svc)
        assert svc.terminate() == 0
    finally:
        if svc.alive:
            svc.kill()
    letters = await read_topic(kafka_bootstrap, dlq, idle=1.0)
    assert {int(headers_of(r)["dlq.original.offset"]) for r in letters} == {poison}
