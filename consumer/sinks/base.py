"""What every sink receives: `Row`, one stored event with its Kafka coordinates."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import orjson

from consumer.types import Record

#: Columns of table `events`, in the order sinks write them (`stored_at` is the
#: database's default). A `Row` holds them in this order (`data` serialized).
COLUMNS: tuple[str, ...] = (
    "id", "type", "version", "occurred_at", "data", "source",
    "topic", "partition", "offset", "key",
)


def _data_json(data: Any) -> bytes:
    """`data` as JSON bytes: a pydantic model serialized by pydantic-core in
    one step (no dict in between), anything else as a mapping by orjson."""
    serializer = getattr(data, "__pydantic_serializer__", None)
    if serializer is not None:
        out: bytes = serializer.to_json(data)
        return out
    return orjson.dumps(data if isinstance(data, dict) else dict(data))


class Row(NamedTuple):
    """One output record: the event's envelope plus where it came from.

    `(id)` is the idempotency key: writing the same row twice stores it once.
    `data` is held serialized once (`data_json`, JSON bytes): every sink writes
    those bytes, and their length is the batcher's byte weight. A tuple in
    `COLUMNS` order, so a sink can hand rows to its driver as they are, and
    cheap to build: the run path makes one per message.
    """

    id: str
    type: str
    version: int
    occurred_at: datetime
    data_json: bytes
    source: str | None
    topic: str
    partition: int
    offset: int
    key: bytes | None

    @property
    def data(self) -> dict[str, Any]:
        """`data` decoded (a new dict each time: not for hot paths)."""
        value: dict[str, Any] = orjson.loads(self.data_json)
        return value

    @classmethod
    def build(cls, *, id: str, type: str, version: int,
              occurred_at: datetime, data: Mapping[str, Any], source: str | None,
              topic: str, partition: int, offset: int, key: bytes | None) -> Row:
        """A row from its fields with `data` as a mapping (tests, tools)."""
        return cls(id, type, version, occurred_at, _data_json(data), source, topic,
                   partition, offset, key)

    @classmethod
    def from_event(cls, event: Any, record: Record) -> Row:
        """`event` is a validated envelope model from `schemas` (or any object
        with `id`, `type`, `version`, `occurred_at`, `data`, optional `source`);
        `data` may be a dict or a pydantic model."""
        occurred_at = event.occurred_at
        if isinstance(occurred_at, str):
            occurred_at = datetime.fromisoformat(occurred_at)
        return cls(str(event.id), str(event.type), int(event.version), occurred_at,
                   _data_json(event.data), getattr(event, "source", None), record.topic,
                   record.partition, record.offset, record.key)

    @classmethod
    def from_events(cls, events: Sequence[Any], records: Sequence[Record]) -> list[Row]:
        """`from_event` for a run of validated `schemas` events (the run path):
        fields taken as they are (the models already guarantee their types),
        `data` serialized straight from the model by pydantic-core."""
        new = tuple.__new__
        dumps = orjson.dumps
        rows: list[Row] = []
        append = rows.append
        for event, record in zip(events, records, strict=True):
            data = event.data
            append(new(cls, (
                event.id, event.type, event.version, event.occurred_at,
                dumps(data) if type(data) is dict else data.__pydantic_serializer__.to_json(data),
                event.source, record.topic, record.partition, record.offset, record.key)))
        return rows

    def size(self) -> int:
        """The row's weight in bytes, for the batcher's byte trigger."""
        return 120 + len(self.id) + len(self.type) + len(self.data_json)

    def envelope(self) -> dict[str, Any]:
        """The event as produced (the JSON envelope), without Kafka coordinates;
        `data` stays the serialized bytes (an `orjson.Fragment`), so
        `orjson.dumps` of the envelope embeds them without a decode."""
        out: dict[str, Any] = {
            "id": self.id, "type": self.type, "version": self.version,
            "occurred_at": self.occurred_at.isoformat(),
            "data": orjson.Fragment(self.data_json),
        }
        if self.source is not None:
            out["source"] = self.source
        return out
