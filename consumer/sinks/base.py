"""What every sink receives: `Row`, one stored event with its Kafka coordinates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from consumer.types import Record


@dataclass(frozen=True, slots=True)
class Row:
    """One output record: the event's envelope plus where it came from.

    `(id)` is the idempotency key: writing the same row twice stores it once.
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

    @classmethod
    def from_event(cls, event: Any, record: Record) -> Row:
        """`event` is a validated envelope model from `schemas`."""
        data = event.data
        if not isinstance(data, dict):
            data = data.model_dump(mode="json")
        return cls(
            id=event.id, type=event.type, version=event.version,
            occurred_at=event.occurred_at, data=data, source=event.source,
            topic=record.topic, partition=record.partition, offset=record.offset,
            key=record.key,
        )

    def size(self) -> int:
        """A cheap estimate of the row's weight, for the batcher's byte trigger."""
        return 200 + len(self.id) + 16 * len(self.data)
