"""Kafka records for unit tests, built without a broker."""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka.structs import ConsumerRecord

from consumer.types import Record


def consumer_record(offset: int = 0, *, topic: str = "t", partition: int = 0,
                    key: bytes | None = b"k", value: bytes | None = b"v",
                    headers: Sequence[tuple[str, bytes]] = (),
                    timestamp: int | None = 0) -> Record:
    """A `ConsumerRecord` as aiokafka hands one out. Its serialized sizes are
    the key's and the value's lengths, -1 for a null one (the engine counts
    them as bytes in flight). `timestamp` is the broker's, in ms; the
    default 0, like None or a negative one, means the record has none, so
    it gets no age."""
    rec: Record = ConsumerRecord(
        topic, partition, offset, timestamp, 0, key, value, None,
        len(key) if key is not None else -1, len(value) if value is not None else -1,
        list(headers))
    return rec
