"""`RunContext`, the one unit that travels the chain of gates, and
`Context`, the view a per-event handler or user middleware gets of a run of
one; the shapes of a gate (`RunMiddleware`) and of a user middleware.

A *run* is consecutive records of one partition, in offset order. The engine
hands the pipeline runs; a single record is a run of one. Gates may cut a run
into *parts* and send each down the rest of the chain (validation: valid
stretches and single invalid records; the settle gate: single records after
a run failed as a whole), and every part is settled — done, dead-lettered or
left in flight — on its own.

A *batch handler* takes a whole run of validated events at once:

    from consumer.gates.context import RunContext, batch_handler

    @batch_handler
    async def handle(events: Sequence[Event], ctx: RunContext) -> None:
        await ctx.http.request("GET", ...)   # rate-limited, as per event
        ctx.emit()                            # every event of the run → the sink

It has the per-event contract for the whole run: when it returns (and the
rows it emitted are written) the run's messages are done; when it raises,
the run is split and every message is retried (and dead-lettered) alone, the
batch handler called with a run of one. Records before the failing one are
therefore handled twice; the store's idempotent writes absorb that, as they
absorb any redelivery.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypeGuard, TypeVar

from consumer.errors import ConsumerError
from consumer.sinks.base import Row
from consumer.sinks.batcher import RowsRefused, mark_retrieved
from consumer.types import DoneRun, Headers, Record

if TYPE_CHECKING:
    from consumer.gates.http import HttpClient

#: Submits rows to the batcher as one unit; returns the unit's write future.
SubmitMany: TypeAlias = Callable[[Sequence[Row]], "asyncio.Future[None]"]
#: The batch handler contract: `await handle(events, ctx)`.
BatchHandler: TypeAlias = Callable[[Sequence[Any], "RunContext"], Awaitable[None]]
#: The rest of the chain, as seen by a gate.
NextRun: TypeAlias = Callable[["RunContext"], Awaitable[None]]
#: The rest of the chain, as seen by a user (per-event) middleware.
Next: TypeAlias = Callable[["Context"], Awaitable[None]]

_MARK = "__consumer_batch_handler__"
F = TypeVar("F", bound=Callable[..., Any])


def batch_handler(fn: F) -> F:
    """Mark an async function `(events, ctx)` as a batch handler."""
    setattr(fn, _MARK, True)
    return fn


def is_batch_handler(fn: object) -> TypeGuard[BatchHandler]:
    return getattr(fn, _MARK, False) is True


@dataclass(slots=True, eq=False)
class RunContext:
    """One run's journey through the chain: `records[i]` carries
    `events[i]` once validation set them. `done` reports records whose
    message is done. `emit` stages rows for the sink; they are submitted when
    the handler returns (never when it raises), and the run is settled once
    every submitted unit is written."""

    records: Sequence[Record]
    done: DoneRun
    submit: SubmitMany | None = None
    http: HttpClient | None = None
    events: Sequence[Any] = ()
    #: The attempt under way (1-based).
    attempt: int = 1
    #: Wall-clock seconds of the first and the latest failed attempt.
    first_failure: float | None = None
    last_failure: float | None = None
    #: Why the run failed: refused by validation (it is then not handled),
    #: or its attempts failed (set by the retry gate). A failed record is
    #: dead-lettered; a failed run of many is split into records.
    error: BaseException | None = None
    #: Submitted units' futures, and for each the run indexes of its rows.
    units: list[asyncio.Future[None]] = field(default_factory=list)
    owners: list[Sequence[int]] = field(default_factory=list)
    #: Units emitted by the attempt under way.
    staged: list[tuple[list[Row], Sequence[int]]] = field(default_factory=list)
    #: Free-form space for the handler and user middleware.
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def topic(self) -> str:
        value: str = self.records[0].topic
        return value

    @property
    def partition(self) -> int:
        value: int = self.records[0].partition
        return value

    def part(self, records: Sequence[Record], events: Sequence[Any],
             error: BaseException | None = None) -> RunContext:
        """A run of some of these records, settled on its own."""
        return RunContext(records, self.done, self.submit, self.http, events, error=error)

    def singles(self) -> list[RunContext]:
        """Each record as a fresh run of one, with its event."""
        events = self.events
        return [self.part((record,), events[i:i + 1]) for i, record in enumerate(self.records)]

    def emit(self, events: Sequence[Any] | None = None, *,
             indexes: Iterable[int] | None = None) -> None:
        """Send rows to the sink as one unit, each with its record's
        coordinates: by default one per event of the run; `indexes` picks
        records of the run; `events` replaces what is stored (one per chosen
        record, in order). The rows are written once the attempt succeeds
        (never when it fails); this does not wait for the write. Raises
        `ValueError` when `events` and the chosen records differ in number,
        `RuntimeError` once the handler returned."""
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
        """The attempt succeeded: hand its units to the batcher. Raises
        `ConsumerError` (retriable) when the batcher is not running."""
        staged, self.staged = self.staged, []
        if self.submit is None:
            return
        for rows, chosen in staged:
            self.units.append(self.submit(rows))
            self.owners.append(chosen)

    def drop_units(self) -> None:
        """Forget submitted units (a failed attempt, or a run split or left
        in flight): nobody will read their outcome."""
        for fut in self.units:
            fut.add_done_callback(mark_retrieved)
        self.units.clear()
        self.owners.clear()

    def failed(self, exc: BaseException) -> None:
        """Note the time of a failed attempt (the error itself is the caller's)."""
        now = time.time()
        if self.first_failure is None:
            self.first_failure = now
        self.last_failure = now

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
        # A record with a row refused and another not written stays in flight:
        # dead-lettered only when every failure is the data's.
        for i in stuck:
            refused.pop(i, None)
        good = [r for i, r in enumerate(self.records) if i not in refused and i not in stuck]
        return good, sorted(refused.items()), stuck


class Context:
    """What a per-event handler and user middleware see: a run of one.

    Handlers read the coordinates and `attempt` (1-based), call
    `emit(event)` to send a row to the sink and `http.request(...)` for
    rate-limited downstream calls. Middleware may read (or replace) `event`.
    """

    __slots__ = ("run",)

    def __init__(self, run: RunContext) -> None:
        self.run = run

    @property
    def record(self) -> Record:
        return self.run.records[0]

    @property
    def event(self) -> Any:
        return self.run.events[0]

    @event.setter
    def event(self, value: Any) -> None:
        self.run.events = (value,)

    @property
    def attempt(self) -> int:
        return self.run.attempt

    @property
    def http(self) -> HttpClient | None:
        return self.run.http

    @property
    def state(self) -> dict[str, Any]:
        return self.run.state

    @property
    def topic(self) -> str:
        value: str = self.record.topic
        return value

    @property
    def partition(self) -> int:
        value: int = self.record.partition
        return value

    @property
    def offset(self) -> int:
        value: int = self.record.offset
        return value

    @property
    def key(self) -> bytes | None:
        value: bytes | None = self.record.key
        return value

    @property
    def headers(self) -> Headers:
        value: Headers = self.record.headers
        return value

    @property
    def timestamp(self) -> int:
        """The record's timestamp, milliseconds since the epoch."""
        value: int = self.record.timestamp
        return value

    def emit(self, event: Any = None) -> None:
        """Send `event` (default: this message's event) to the sink as a `Row`
        with this record's coordinates, once this attempt succeeds (a failed
        attempt's rows are never written). Does not wait for the write."""
        self.run.emit((self.event if event is None else event,))


async def failure_of(call_next: NextRun, run: RunContext) -> BaseException | None:
    """Run the rest of the chain; its failure, or None. Cancellation of the
    worker passes through; a `CancelledError` the handler raised on its own
    (it awaited a future someone else cancelled) is a failure like any
    other."""
    try:
        await call_next(run)
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        if task is None or task.cancelling():
            raise
        return exc
    except Exception as exc:  # noqa: BLE001 - the caller judges every failure
        return exc
    return None


class RunMiddleware(Protocol):
    """A gate: `await gate(run, call_next)`; it may act before and after
    `await call_next(run)`, call it once per part of the run, again, or not
    at all."""

    async def __call__(self, run: RunContext, call_next: NextRun) -> None: ...


class Middleware(Protocol):
    """`CONSUMER_MIDDLEWARE`: per event, around each handler attempt."""

    async def __call__(self, ctx: Context, call_next: Next) -> None: ...
