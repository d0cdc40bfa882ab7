"""Aliases and plug-point Protocols shared across the gates.

The engine hands raw Kafka records to a `Processor`; the processor calls the
`Done` callback exactly once per record when the message is *done* (its sink
write or its dead-letter send was acknowledged). Everything else plugs in behind
these few shapes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeAlias

from aiokafka.structs import ConsumerRecord, TopicPartition

#: A record as fetched from Kafka: raw bytes, never decoded by the engine.
Record: TypeAlias = ConsumerRecord[bytes, bytes]
#: (topic, partition); aiokafka's NamedTuple, hashable and cheap.
TP: TypeAlias = TopicPartition
Offset: TypeAlias = int
Headers: TypeAlias = Sequence[tuple[str, bytes]]

_MAX_REASON = 300


class Undecodable:
    """The value of a record the Kafka client could not decode (a header name
    that is not UTF-8, a batch that cannot be decompressed): `raw` is the
    value as recovered (None when the record had none or it could not be
    read), `reason` says what went wrong. Not bytes on purpose: validation
    refuses it, so such a record can only end in the dead-letter topic
    (`consumer.engine.wire` makes them)."""

    __slots__ = ("raw", "reason")

    def __init__(self, raw: bytes | None, reason: str) -> None:
        self.raw = raw
        self.reason = reason[:_MAX_REASON]

    def __len__(self) -> int:
        return 0 if self.raw is None else len(self.raw)

    def __repr__(self) -> str:
        return f"Undecodable({self.reason!r})"


#: Called exactly once per record when its message is done. Must not block.
Done: TypeAlias = Callable[[Record], None]
#: The same for several records of one partition at once (ascending offsets).
DoneRun: TypeAlias = Callable[[Sequence[Record]], None]


class Processor(Protocol):
    """What the engine's workers run for each record.

    `process` returns when the record no longer needs its worker (the handler
    returned, or the message was routed to the dead-letter path); `done(record)`
    may be called later, from another task, once the write is acknowledged.
    `process` never raises for a bad record; it raises only when the service
    must stop (e.g. the dead-letter circuit breaker tripped).
    """

    async def process(self, record: Record, done: Done) -> None: ...

    async def flush(self) -> None:
        """Push out buffered work (batches) now; return when it was attempted."""

    async def close(self) -> None: ...


class RunProcessor(Processor, Protocol):
    """A `Processor` that also takes a whole run at once: consecutive records
    of one lane (one partition, ascending offsets). Same contract as
    `process`, per record of the run: each is reported exactly once through
    `done` (possibly in several calls, possibly later), in the run's order
    wherever the ordering mode requires it. The dispatcher prefers it."""

    async def process_run(self, records: Sequence[Record], done: DoneRun) -> None: ...


class Sink(Protocol):
    """A destination for emitted rows. `write` is all-or-nothing for the batch
    and raises a `ConsumerError` whose `retriable` flag tells the batcher
    whether to retry or to bisect the batch. A sink where the order of rows
    does not matter may set `max_writes` (an int, default 1): the batcher
    then runs up to that many `write` calls at once."""

    name: str

    async def open(self) -> None: ...

    async def write(self, rows: Sequence[Any]) -> None: ...

    async def close(self) -> None: ...

    async def healthy(self) -> bool: ...


#: The user handler contract: `await handle(event, ctx)`.
Handler: TypeAlias = Callable[[Any, Any], Awaitable[None]]
