"""What every sink receives: `Row`, one stored event with its Kafka coordinates."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from consumer.types import Record

#: Columns of table `events`, in the order sinks write them (`stored_at` is the
#: database's default).
COLUMNS: tuple[str, ...] = (
    "id", "type", "version", "occurred_at", "data", "source",
    "topic", "partition", "offset", "key",
)


@dataclass(frozen=True, slots=True)
class Row:
    """One output record: the event's envelope plus where it came from.

    `(id)` is the idempotency key: writing the same row twice stores it once.
    `data_json` caches `data` serialized once (orjson); every sink writes it,
    and its length is the batcher's byte weight.
    """

    id: str
    type: str
    version: int
    occurred_at: datetime
    data: dict[str, Any]
    source: str | None
    topic: str
    partition: int
    offset: int
    key: bytes | None
    data_json: bytes = field(default=b"", compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.data_json:
            # Frozen: the cache is filled once, here, never mutated afterwards.
            object.__setattr__(self, "data_json", orjson.dumps(self.data))

    @classmethod
    def from_event(cls, event: Any, record: Record) -> Row:
        """`event` is a validated envelope model from `schemas` (or any object
        with `id`, `type`, `version`, `occurred_at`, `data`, optional `source`);
        `data` may be a dict or a pydantic model."""
        data = event.data
        if hasattr(data, "model_dump"):
            data = data.model_dump(mode="json")
        elif not isinstance(data, dict):
            data = dict(data)
        occurred_at = event.occurred_at
        if isinstance(occurred_at, str):
            occurred_at = datetime.fromisoformat(occurred_at)
        return cls(
            id=str(event.id), type=str(event.type), version=int(event.version),
            occurred_at=occurred_at, data=data, source=getattr(event, "source", None),
            topic=record.topic, partition=record.partition, offset=record.offset,
            key=record.key,
        )

    @classmethod
    def from_events(cls, events: Sequence[Any], records: Sequence[Record]) -> list[Row]:
        """`from_event` for a run of validated `schemas` events (the run path):
        `data` dumped once by pydantic-core and serialized once by orjson,
        fields taken as they are (the models already guarantee their types)."""
        dumps = orjson.dumps
        rows: list[Row] = []
        append = rows.append
        for event, record in zip(events, records, strict=True):
            data = event.data
            if type(data) is not dict:
                data = data.model_dump(mode="json")
            append(cls(event.id, event.type, event.version, event.occurred_at, data,
                       event.source, record.topic, record.partition, record.offset,
                       record.key, dumps(data)))
        return rows

    def size(self) -> int:
        """The row's weight in bytes, for the batcher's byte trigger."""
        return 120 + len(self.id) + len(self.type) + len(self.data_json)

    def envelope(self) -> dict[str, Any]:
        """The event as produced (the JSON envelope), without Kafka coordinates."""
        out: dict[str, Any] = {
            "id": self.id, "type": self.type, "version": self.version,
            "occurred_at": self.occurred_at.isoformat(), "data": self.data,
        }
        if self.source is not None:
            out["source"] = self.source
        return out
