"""Helpers for the gate tests: produce events with chosen ids, read the
group's committed offset and the dead-letter topic."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from consumer.security import PLAINTEXT, KafkaSecurity
from schemas.samples import sample_event


def event_value(i: int, prefix: str = "ok") -> tuple[str, bytes]:
    event = sample_event(i)
    event["id"] = f"{prefix}-{event['id']}"
    return event["id"], orjson.dumps(event)


async def produce_values(bootstrap: str, topic: str, values: list[bytes],
                         key: bytes = b"k", *, security: KafkaSecurity = PLAINTEXT) -> list[int]:
    """Send `values` in order (one key: one partition); return their offsets."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True,
                                **security.options())
    await producer.start()
    try:
        futures = [await producer.send(topic, v, key=key) for v in values]
        return [meta.offset for meta in await asyncio.gather(*futures)]
    finally:
        await producer.stop()


async def committed_offset(admin: AIOKafkaAdminClient, group: str, topic: str,
                           partition: int = 0) -> int:
    """The group's committed offset (-1 when nothing is committed yet)."""
    try:
        offsets: dict[Any, Any] = await admin.list_consumer_group_offsets(group)
    except KafkaError:
        return -1
    meta = offsets.get(TopicPartition(topic, partition))
    return -1 if meta is None else int(meta.offset)


def headers_of(record: Any) -> dict[str, str]:
    return {k: bytes(v).decode() for k, v in record.headers}
