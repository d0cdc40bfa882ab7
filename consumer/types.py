"""Aliases and plug-point Protocols shared across the gates.

The engine hands raw Kafka records to a `Processor`; the processor calls the
`Done` callback exactly once per record when the message is *done* (its sink
write or its dead-letter send was acknowledged). Everything else plugs in behind
these few shapes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, NamedTuple, Protocol, TypeAlias

from aiokafka.structs import ConsumerRecord, TopicPartition

from consumer.engine.progress import Progress

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
    """What the engine's workers run: the whole contract, checked by mypy.

    `process_run` takes a run — consecutive records of one lane (one
    partition, ascending offsets) — and returns when the records no longer
    need their worker (handled, or routed to the dead-letter path); `done`
    reports each record exactly once (possibly in several calls, possibly
    later, from another task) when its message is done: its sink write or
    dead-letter send acknowledged. It never raises for a bad record; it
    raises only when the service must stop (the dead-letter breaker
    tripped). `takes_runs` is True when a run is one handler call: the
    dispatcher then packs keys into long runs. `start` is awaited before the
    first run; `close` is safe twice. `healthy` is about the processor
    itself (liveness); `unready` lists why messages cannot be finished now
    (readiness), [] when they can; it is bounded.
    """

    @property
    def takes_runs(self) -> bool: ...

    async def start(self) -> None: ...

    async def process_run(self, records: Sequence[Record], done: DoneRun) -> None: ...

    async def flush(self) -> None:
        """Push out buffered work (batches) now; return when it was attempted."""

    async def close(self) -> None: ...

    def healthy(self) -> bool: ...

    async def unready(self) -> list[str]: ...


class RecordProcessor:
    """A `Processor` for work done record by record: subclasses implement
    `process`; a run is its records in order, and the rest has the plain
    defaults (nothing to start, flush or close; healthy and ready)."""

    takes_runs = False

    async def start(self) -> None:
        return None

    async def process(self, record: Record, done: Done) -> None:
        raise NotImplementedError

    async def process_run(self, records: Sequence[Record], done: DoneRun) -> None:
        def one(record: Record) -> None:
            done((record,))

        for record in records:
            await self.process(record, one)

    async def flush(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def healthy(self) -> bool:
        return True

    async def unready(self) -> list[str]:
        return []


class Sink(Protocol):
    """A destination for emitted rows. `write` is all-or-nothing for the batch
    and raises a `ConsumerError` whose `retriable` flag tells the batcher
    whether to retry or to bisect the batch — or, for a sink that stores rows
    one by one, raises `PartlyWritten` naming the rows it did store: the
    batcher never sends those again and retries or bisects only the rest.
    `max_writes` is how many `write` calls the batcher may run at once: 1
    where rows must arrive in order, more where their order does not
    matter."""

    name: str
    max_writes: int

    async def open(self) -> None: ...

    async def write(self, rows: Sequence[Any]) -> None: ...

    async def close(self) -> None: ...

    async def healthy(self) -> bool: ...


class Position(NamedTuple):
    """What the engine knows of one partition it owns, for exactly-once
    writes: the fencing `epoch` it claimed on assignment, the tracker's
    committable offset (None: nothing done yet) and the offsets done above
    it, ascending."""

    epoch: int
    committable: int | None
    done: Sequence[int]


#: The engine's read-only view for the sink: the `Position` of a partition
#: this member owns, or None when it does not (revoked, or never claimed).
#: Synchronous and cheap: called inside every write.
Positions: TypeAlias = Callable[[TP], Position | None]


class Claim(NamedTuple):
    """A partition taken over on assignment: the new fencing `epoch` and what
    the database says is done."""

    epoch: int
    progress: Progress


class OffsetStore(Protocol):
    """Where exactly-once delivery keeps each partition's progress: the
    PostgreSQL sink. `claim` raises the epoch of every partition (taking the
    partition from any previous owner: their writes are refused from now
    on) and returns what is stored; raises `SinkError` (retriable) when the
    database cannot be reached."""

    async def claim(self, partitions: Collection[TP]) -> dict[TP, Claim]: ...

    def bind(self, positions: Positions) -> None: ...


#: The user handler contract: `await handle(event, ctx)`.
Handler: TypeAlias = Callable[[Any, Any], Awaitable[None]]
