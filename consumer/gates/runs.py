"""The run path's pieces: batch handlers, what they see, and run validation.

A *batch handler* takes a whole run of validated events of one partition —
consecutive records of one lane, in order — instead of one event:

    from consumer.gates.runs import RunContext, batch_handler

    @batch_handler
    async def handle(events: Sequence[Event], ctx: RunContext) -> None:
        await ctx.http.request("GET", ...)   # rate-limited, as per event
        ctx.emit()                            # every event of the run → the sink

`CONSUMER_HANDLER=module:handle` names it exactly like a per-event handler.
It has the per-event contract, for the whole run: when it returns (and the
rows it emitted are written) the run's messages are done; when it raises,
the run is split and every message goes alone through the per-event chain
(validation, retry, dead-letter), the batch handler called with a run of one
— so a failing record is retried and dead-lettered on its own while the rest
complete. (Records before the failing one are therefore handled twice; the
store's idempotent writes absorb that, as they absorb any redelivery.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from consumer.errors import ConsumerError
from consumer.formats import ValueFormat, decode_all
from consumer.sinks.base import Row
from consumer.sinks.batcher import RowsRefused
from consumer.types import Handler, Record, Undecodable
from schemas import Event, InvalidEvent, Reason, validate, validate_many

if TYPE_CHECKING:
    from consumer.gates.context import Context
    from consumer.gates.http import HttpClient

#: Submits rows to the batcher as one unit; returns the unit's write future.
SubmitMany: TypeAlias = Callable[[Sequence[Row]], "asyncio.Future[None]"]
#: The batch handler contract: `await handle(events, ctx)`.
BatchHandler: TypeAlias = Callable[[Sequence[Any], "RunContext"], Awaitable[None]]

_MARK = "__consumer_batch_handler__"
F = TypeVar("F", bound=Callable[..., Any])


def batch_handler(fn: F) -> F:
    """Mark an async function `(events, ctx)` as a batch handler."""
    setattr(fn, _MARK, True)
    return fn


def is_batch_handler(fn: object) -> bool:
    return getattr(fn, _MARK, False) is True


@dataclass(slots=True, eq=False)
class RunContext:
    """One run's journey: `records[i]` carries `events[i]` (both in offset
    order, one partition). `emit` sends rows to the sink without waiting; the
    pipeline completes the run once every emitted unit is written."""

    records: Sequence[Record]
    events: Sequence[Any]
    submit: SubmitMany | None = None
    http: HttpClient | None = None
    attempt: int = 1
    #: Emitted units' futures, and for each the run indexes of its rows.
    units: list[asyncio.Future[None]] = field(default_factory=list)
    owners: list[Sequence[int]] = field(default_factory=list)
    #: Units emitted by the handler call under way: submitted when it
    #: returns, dropped when it raises (a failed call writes nothing).
    staged: list[tuple[list[Row], Sequence[int]]] = field(default_factory=list)
    #: Free-form space for the handler.
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def topic(self) -> str:
        value: str = self.records[0].topic
        return value

    @property
    def partition(self) -> int:
        value: int = self.records[0].partition
        return value

    def emit(self, events: Sequence[Any] | None = None, *,
             indexes: Iterable[int] | None = None) -> None:
        """Send rows to the sink as one unit, each with its record's
        coordinates: by default one per event of the run; `indexes` picks
        records of the run; `events` replaces what is stored (one per chosen
        record, in order). The rows are written once the handler returns
        (never when it raises); this does not wait for the write. Raises
        `ValueError` when `events` and the chosen records differ in number."""
        if self.submit is None:
            raise RuntimeError("emit() needs a sink and must be called before the handler "
                               "returns")
        chosen = range(len(self.records)) if indexes is None else list(indexes)
        records = self.records if indexes is None else [self.records[i] for i in chosen]
        if events is None:
            own = self.events if indexes is None else [self.events[i] for i in chosen]
            rows = Row.from_events(own, records)
        else:
            if len(events) != len(records):
                raise ValueError(f"{len(events)} events for {len(records)} records")
            rows = [Row.from_event(e, r) for e, r in zip(events, records, strict=True)]
        self.staged.append((rows, chosen))

    def submit_staged(self) -> None:
        """The handler returned: hand its units to the batcher. Raises
        `ConsumerError` (retriable) when the batcher is not running."""
        staged, self.staged = self.staged, []
        if self.submit is None:
            return
        for rows, chosen in staged:
            self.units.append(self.submit(rows))
            self.owners.append(chosen)

    def outcome(self) -> tuple[list[Record], list[tuple[int, BaseException]], set[int]]:
        """Once every unit settled: (records done — all their rows written,
        in order; (index, error) of records with a row the sink refused, to be
        dead-lettered; indexes of records whose rows were not written because
        the batcher closed, to be left in flight)."""
        refused: dict[int, BaseException] = {}
        stuck: set[int] = set()
        for fut, owners in zip(self.units, self.owners, strict=True):
            exc = asyncio.CancelledError() if fut.cancelled() else fut.exception()
            if exc is None:
                continue
            if isinstance(exc, RowsRefused):
                refused.update((owners[i], exc) for i in exc.indexes)
            elif isinstance(exc, ConsumerError) and not exc.retriable:
                refused.update((i, exc) for i in owners)
            else:
                stuck.update(owners)
        if not refused and not stuck:
            return list(self.records), [], stuck
        # A record with a row refused and another not written stays in flight
        # (as per event: dead-lettered only when every failure is the data's).
        for i in stuck:
            refused.pop(i, None)
        good = [r for i, r in enumerate(self.records) if i not in refused and i not in stuck]
        return good, sorted(refused.items()), stuck


@dataclass(slots=True)
class Segment:
    """A stretch of a run: valid records with their events, or one invalid
    record with why (`error`)."""

    records: list[Record]
    events: list[Any]
    error: InvalidEvent | None = None


def _undecodable(value: object) -> InvalidEvent | None:
    """The refusal of a value the Kafka client could not decode."""
    return InvalidEvent(Reason.UNDECODABLE, value.reason) if type(value) is Undecodable else None


def validate_value(raw: bytes | Undecodable | None, *, allow_unknown: bool = False) -> Event:
    """`schemas.validate` for a record value as the engine delivers it: a
    value the Kafka client could not decode is refused as `undecodable`."""
    if (refused := _undecodable(raw)) is not None:
        raise refused
    return validate(raw, allow_unknown=allow_unknown)  # type: ignore[arg-type]


def validate_run(records: Sequence[Record], *, allow_unknown: bool = False,
                 value_format: ValueFormat | None = None) -> list[Segment]:
    """Validate a run in one pass and cut it, in order, into segments of
    valid records and single invalid ones: the pipeline handles them in that
    order, so the handler, the dead-letter topic and the breaker see the
    records in the order a per-record pass would. With a `value_format`
    (consumer.formats; its `prepare` of these values done) it decodes."""
    if value_format is None:
        results = validate_many([r.value for r in records], allow_unknown=allow_unknown)
    else:  # value formats hook
        results = decode_all(value_format, [r.value for r in records])
    if results and InvalidEvent not in map(type, results):  # all valid: checked in C
        return [Segment(list(records), results)]
    segments: list[Segment] = []
    current = Segment([], [])
    for record, result in zip(records, results, strict=True):
        if isinstance(result, InvalidEvent):
            if current.records:
                segments.append(current)
                current = Segment([], [])
            segments.append(Segment([record], [], _undecodable(record.value) or result))
        else:
            current.records.append(record)
            current.events.append(result)
    if current.records:
        segments.append(current)
    return segments


def per_event(handler: BatchHandler, submit: SubmitMany | None) -> Handler:
    """A batch handler as a per-event one (the split path and user
    middleware): called with a run of one; what it emits joins the message's
    pending writes."""

    async def call(event: Any, ctx: Context) -> None:
        run = RunContext([ctx.record], [event], submit=submit, http=ctx.http,
                         attempt=ctx.attempt, state=ctx.state)
        try:
            await handler([event], run)
            run.submit_staged()
        finally:
            run.submit = None  # a late emit is refused, as per event
            ctx.pending.extend(run.units)

    return call
