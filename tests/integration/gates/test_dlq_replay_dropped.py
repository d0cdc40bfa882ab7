"""`consumer dlq replay` against the real broker: a dead letter whose value
or key was left out is never replayed as something else (refused by
default, skipped with --skip-dropped); null keys and null header values
replay as null."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer

from consumer.gates.dlq import (
    H_KEY_DROPPED,
    H_OFFSET,
    H_PARTITION,
    H_TOPIC,
    H_VALUE_DROPPED,
    H_VALUE_NULL,
)
from devtools.harness import read_topic
from tests.integration.gates.test_breaker_replay import cli
from tests.support.kafka import NewTopicFactory

pytestmark = pytest.mark.integration


def origin(topic: str, offset: int) -> list[tuple[str, bytes | None]]:
    return [(H_TOPIC, topic.encode()), (H_PARTITION, b"0"), (H_OFFSET, str(offset).encode()),
            ("dlq.error.type", b"InvalidEvent")]


async def test_dropped_records_are_refused_or_skipped_and_nulls_replay_as_null(
        kafka_bootstrap: str, new_topic: NewTopicFactory) -> None:
    source = await new_topic("replay-src")
    dlq = await new_topic("replay-dlq")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        # offset 0: replayable — no key, a header without a value
        await producer.send_and_wait(dlq, b'{"kept": true}', key=None,
                                     headers=[("trace", None), *origin(source, 5)])
        # offset 1: its value was too large for the dead-letter topic
        await producer.send_and_wait(dlq, None, key=b"k",
                                     headers=[*origin(source, 6), (H_VALUE_DROPPED, b"too_large")])
        # offset 2: its key could not be sent and was replaced
        await producer.send_and_wait(dlq, b"v", key=b"replaced",
                                     headers=[*origin(source, 7), (H_KEY_DROPPED, b"unsendable")])
        # offset 3: a keyless tombstone (an empty value stands in for its null)
        await producer.send_and_wait(dlq, b"", key=None,
                                     headers=[*origin(source, 8), (H_VALUE_NULL, b"true")])
        # offset 4: a keyed tombstone: replays as a tombstone again
        await producer.send_and_wait(dlq, b"", key=b"gone",
                                     headers=[*origin(source, 9), (H_VALUE_NULL, b"true")])
    finally:
        await producer.stop()
    target = ("--bootstrap-servers", kafka_bootstrap, "--topic", dlq)

    code, out = await cli("dlq", "replay", *target)
    assert code == 1, out
    assert "3 dead letter(s) lack what failed, nothing was replayed" in out
    assert f"{dlq}[0]@1 (original {source}[0]@6) without its value" in out
    assert f"{dlq}[0]@2 (original {source}[0]@7) without its key" in out
    assert f"{dlq}[0]@3 (original {source}[0]@8) without its null key and value" in out
    assert "--skip-dropped" in out
    assert "Traceback" not in out
    assert await read_topic(kafka_bootstrap, source, idle=1.0) == []

    code, out = await cli("dlq", "replay", *target, "--skip-dropped")
    assert code == 0, out
    assert f"replayed 2 (2 to {source})" in out
    assert "skipped 3 with a dropped value or key" in out
    replayed, tombstone = await read_topic(kafka_bootstrap, source, idle=1.0)
    assert tombstone.key == b"gone"
    assert tombstone.value is None
    assert replayed.key is None
    assert replayed.value == b'{"kept": true}'
    assert list(replayed.headers) == [("trace", None), ("dlq.replay.count", b"1")]
