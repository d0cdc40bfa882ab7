"""Types and helpers for tests that talk to the real broker."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import orjson
from aiokafka import AIOKafkaProducer

from consumer.security import PLAINTEXT, KafkaSecurity
from schemas.samples import sample_event

#: The `new_topic` fixture: `await new_topic(prefix, partitions, **config)` → name.
NewTopicFactory = Callable[..., Awaitable[str]]


def event_value(i: int, prefix: str = "ok") -> tuple[str, bytes]:
    """Sample event `i` with its id prefixed by `prefix` (test handlers act
    on the prefix): (id, value)."""
    event = sample_event(i)
    event["id"] = f"{prefix}-{event['id']}"
    return event["id"], orjson.dumps(event)


async def produce_values(bootstrap: str, topic: str, values: Sequence[bytes],
                         key: bytes | Callable[[int], bytes] = b"k", *,
                         security: KafkaSecurity = PLAINTEXT) -> list[int]:
    """Send `values` as they are, in order, through an idempotent producer,
    each with `key` (or `key(i)` for the i-th value): one key, one
    partition, in that order. Returns each value's offset once all are
    acknowledged. For sample traffic by count see `devtools.harness.produce`."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True,
                                **security.options())
    await producer.start()
    try:
        futures = [await producer.send(topic, v, key=key(i) if callable(key) else key)
                   for i, v in enumerate(values)]
        return [meta.offset for meta in await asyncio.gather(*futures)]
    finally:
        await producer.stop()
