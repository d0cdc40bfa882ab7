"""The Kafka sink against the real broker: a batch with a row the output
topic refuses yields every other row exactly once — the acknowledged part
of the batch is never sent again while the refused row is isolated."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime

import orjson
import pytest

from consumer.config import Settings
from consumer.sinks import open_sink
from consumer.sinks.base import Row
from consumer.sinks.batcher import Batcher, RowsRefused
from devtools.harness import read_topic
from tests.integration.sinks.test_sink_contract import incompressible, rows
from tests.support.kafka import NewTopicFactory

pytestmark = pytest.mark.integration

#: The output topic's record limit: above a normal producer batch (16 KiB),
#: below the one big row.
MAX_MESSAGE_BYTES = 60_000


def big_row(offset: int) -> Row:
    return Row.build(id="too-big", type="order.created", version=1,
                     occurred_at=datetime(2026, 3, 1, tzinfo=UTC),
                     data={"blob": incompressible(100_000)},
                     source=None, topic="events", partition=0, offset=offset, key=b"big")


async def test_a_refused_row_is_isolated_and_every_other_row_is_sent_once(
        kafka_bootstrap: str, new_topic: NewTopicFactory) -> None:
    topic = await new_topic("sink-split", **{"max.message.bytes": str(MAX_MESSAGE_BYTES)})
    batch = rows(40)
    batch.insert(25, big_row(25))
    sink = open_sink(f"kafka://{topic}", settings=Settings(bootstrap_servers=kafka_bootstrap))
    await sink.open()
    try:
        settings = Settings(bootstrap_servers=kafka_bootstrap, batch_max_items=1_000,
                            batch_max_latency=0.05, sink_retry_base_delay=0.05,
                            sink_retry_max_delay=0.2)
        async with Batcher(sink, settings) as batcher:
            unit = batcher.submit_many(batch)
            with pytest.raises(RowsRefused) as info:
                async with asyncio.timeout(60):
                    await unit
        assert info.value.indexes == (25,)
    finally:
        await sink.close()
    records = await read_topic(kafka_bootstrap, topic, idle=1.0)
    ids = Counter(orjson.loads(r.value)["id"] for r in records)
    assert ids == Counter(r.id for r in batch if r.id != "too-big")  # each exactly once

