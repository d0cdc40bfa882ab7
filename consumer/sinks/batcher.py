"""Batcher: collects rows for one sink and writes them in batches.

Flow: `submit_many(rows)` (sync, never blocks) buffers a *unit* of rows and
returns one future for the unit (`submit(row)` is a unit of one); the
background `_flush_routine` writes a batch when `BatchTrigger` says it is due
(items, bytes or latency). Writes go one at a time (rows reach the sink in
the order they were submitted), or up to the sink's `max_writes` at once for
a sink where the order of rows does not matter (PostgreSQL: while one batch
is on the server, the next one is already on its way). A unit may span
batches; its future resolves when every one of its rows is written.

Failures: a retriable `SinkError` (the sink is away) is retried forever with
capped, jittered backoff — the rows stay in flight, so the engine's in-flight
limit pauses partitions instead of buffering without bound. A non-retriable
error (the data) bisects the batch until the rows that fail are isolated:
their units' futures fail with `RowsRefused` (non-retriable, naming the
refused rows' indexes in the unit; the pipeline dead-letters those messages),
the rest are written. A sink that stores rows one by one says which rows of
a failed batch it stored (`PartlyWritten`): those are settled and never sent
again; only the rest is retried or bisected. Rows of partitions the sink says
are no longer ours (`Fenced`, exactly-once delivery) are never written: their
units' futures fail with it (retriable, so their messages stay in flight) and
the rest of the batch is written at once. With exactly-once delivery a
record's rows are never split over two batches (`whole_records`). Any other exception is retried
`retry_max_attempts` times, then treated as a data error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from itertools import repeat
from typing import TYPE_CHECKING

from consumer.backoff import Backoff
from consumer.config import Delivery, Settings
from consumer.errors import Fenced, PartlyWritten, SinkError
from consumer.sinks.base import Row
from consumer.sinks.trigger import BatchTrigger, split, whole_records
from consumer.types import Sink

if TYPE_CHECKING:
    from consumer.observability.metrics import Metrics

log = logging.getLogger("consumer.sinks")

#: Floor for the retry delay: a zero base delay must not spin on a dead sink.
_MIN_DELAY = 0.05


class _SinkMetrics:
    """The batcher's view of `Metrics`, typed; `metrics=None` turns every
    instrument off (None)."""

    def __init__(self, metrics: Metrics | None, sink: str) -> None:
        m = metrics
        self.batch_rows = None if m is None else m.sink_batch_rows.labels(sink=sink)
        self.flush_seconds = None if m is None else m.sink_flush_seconds.labels(sink=sink)
        self.rows_written = None if m is None else m.sink_rows_written.labels(sink=sink)
        self.retriable_errors = None if m is None else m.sink_errors.labels(sink, "true")
        self.fatal_errors = None if m is None else m.sink_errors.labels(sink, "false")
        self.poison_rows = None if m is None else m.sink_poison_rows.labels(sink=sink)


class RowsRefused(SinkError):
    """Some rows of a unit were refused by the sink (isolated by bisection):
    `indexes` are their positions in the unit, ascending. Never retriable."""

    retriable = False

    def __init__(self, message: str, indexes: Sequence[int]) -> None:
        super().__init__(message, retriable=False)
        self.indexes = tuple(sorted(indexes))


class _Unit:
    """Rows submitted together: one future, resolved once all are settled."""

    __slots__ = ("fenced", "future", "refused", "remaining", "why")

    def __init__(self, future: asyncio.Future[None], count: int) -> None:
        self.future = future
        self.remaining = count
        self.refused: list[int] = []
        self.why = ""
        self.fenced: Fenced | None = None

    def settle(self, count: int) -> None:
        self.remaining -= count
        if self.remaining <= 0 and not self.future.done():
            if self.fenced is not None:  # not ours any more: left in flight
                self.future.set_exception(self.fenced)
            elif self.refused:
                self.future.set_exception(RowsRefused(self.why, self.refused))
            else:
                self.future.set_result(None)


def _release(waiters: list[asyncio.Future[None]]) -> None:
    """Return every waiting `flush()` call, and forget them."""
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)
    waiters.clear()


def mark_retrieved(fut: asyncio.Future[None]) -> None:
    """A done-callback for row futures nobody will read (failed at shutdown,
    or of a message already being dead-lettered): marks their error seen."""
    if not fut.cancelled():
        fut.exception()


class Batcher:
    """Per-sink batching, retry and bisection. See the module docstring.

    `start()` opens nothing (the sink is opened by its owner) and starts
    `_flush_routine`; `close()` flushes what is buffered, stops the routine
    and is safe to call twice; it does not close the sink.
    """

    def __init__(self, sink: Sink, settings: Settings, metrics: Metrics | None = None,
                 *, clock: Callable[[], float] = time.monotonic) -> None:
        self.sink = sink
        self._trigger = BatchTrigger(settings.batch_max_items, settings.batch_max_bytes,
                                     settings.batch_max_latency)
        self._max_items = settings.batch_max_items
        self._max_bytes = settings.batch_max_bytes
        self._backoff = Backoff(settings.sink_retry_base_delay, settings.sink_retry_max_delay,
                                min_delay=_MIN_DELAY)
        self._max_attempts = settings.retry_max_attempts
        self._whole_records = settings.delivery is Delivery.EXACTLY_ONCE
        self._clock = clock
        self._metrics = _SinkMetrics(metrics, sink.name)
        # Buffered rows, with parallel lists: each row's unit, its index in
        # the unit, its weight (computed once).
        self._rows: list[Row] = []
        self._owners: list[_Unit] = []
        self._index: list[int] = []
        self._sizes: list[int] = []
        #: Units taken from the buffer, until each chunk of them has a write.
        self._taken: list[_Unit] = []
        #: Writes in progress, with their units (failed too if cancelled).
        self._writes: dict[asyncio.Task[None], list[_Unit]] = {}
        #: Batches written at once: what the sink says it takes (default 1).
        self._max_writes = max(1, sink.max_writes)
        self._flush_waiters: list[asyncio.Future[None]] = []
        #: Flush calls whose rows the routine took and is writing.
        self._serving: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._failure: BaseException | None = None
        #: Writes whose failures are being retried (the sink is away).
        self._failing = 0

    @property
    def writing_ok(self) -> bool:
        """False while a write is retrying after retriable errors (for
        /readyz); a write cancelled mid-retry (a forced close) keeps it so."""
        return self._failing == 0

    @property
    def pending(self) -> int:
        """Rows buffered and not yet taken for writing."""
        return len(self._rows)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._flush_routine(),
                                             name=f"batcher-{self.sink.name}")

    def submit(self, row: Row) -> asyncio.Future[None]:
        """`submit_many([row])`."""
        return self.submit_many((row,))

    def submit_many(self, rows: Sequence[Row]) -> asyncio.Future[None]:
        """Buffer `rows` as one unit; never blocks. The future resolves once
        every row is written, or fails with `RowsRefused` (non-retriable,
        after the others were written) naming the rows the sink rejects.
        Raises `SinkError` (retriable) when the batcher is closed or its
        routine died."""
        if self._failure is not None:
            raise SinkError(f"batcher for {self.sink.name} stopped: {self._failure!r}",
                            retriable=True) from self._failure
        if self._closing or self._task is None:
            raise SinkError(f"batcher for {self.sink.name} is not running", retriable=True)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        count = len(rows)
        if not count:
            fut.set_result(None)
            return fut
        unit = _Unit(fut, count)
        sizes = list(map(Row.size, rows))
        first = not self._rows
        self._rows.extend(rows)
        self._owners.extend(repeat(unit, count))
        self._index.extend(range(count))
        self._sizes.extend(sizes)
        full = self._trigger.add_many(count, sum(sizes), self._clock())
        if full or first:
            # Full: write now. First rows: the routine must learn the new deadline.
            self._wake.set()
        return fut

    async def flush(self) -> None:
        """Write what is buffered now (and wait for a write in progress); return
        when that was attempted. Rows that failed carry it on their futures."""
        if self._task is None or self._task.done():
            return
        if not self._rows and not self._writes:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._flush_waiters.append(waiter)
        self._wake.set()
        await waiter

    async def close(self) -> None:
        """Flush, then stop the routine. If cancelled (a shutdown deadline), the
        routine is cancelled and unwritten rows' futures fail as retriable."""
        self._closing = True
        task = self._task
        if task is None:
            return
        self._wake.set()
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise
        finally:
            self._fail_pending(SinkError("batcher closed before the write", retriable=True))

    async def healthy(self) -> bool:
        return self.writing_ok and self._failure is None and await self.sink.healthy()

    async def __aenter__(self) -> Batcher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- background ---------------------------------------------------------

    async def _flush_routine(self) -> None:
        try:
            while True:
                if len(self._writes) >= self._max_writes:
                    await self._settle(asyncio.FIRST_COMPLETED)  # rows gather meanwhile
                    continue
                if not self._rows and not self._flush_waiters:
                    if self._closing:
                        await self._settle(asyncio.ALL_COMPLETED)
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                now = self._clock()
                if not (self._closing or self._flush_waiters or self._trigger.due(now)):
                    deadline = self._trigger.deadline()
                    self._wake.clear()
                    timeout = max(0.0, deadline - now) if deadline is not None else None
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout)
                    continue
                rows, owners, index, sizes = self._take()
                self._serving, self._flush_waiters = self._flush_waiters, []
                self._taken = list(dict.fromkeys(owners))
                chunks = split(sizes, self._max_items, self._max_bytes)
                if self._whole_records and len(chunks) > 1:
                    chunks = whole_records([(r.topic, r.partition, r.offset) for r in rows],
                                           chunks)
                for start, stop in chunks:
                    while len(self._writes) >= self._max_writes:
                        await self._settle(asyncio.FIRST_COMPLETED)
                    self._start_write(rows[start:stop], owners[start:stop], index[start:stop])
                self._taken = []  # every chunk is with a write now
                if self._serving:
                    await self._settle(asyncio.ALL_COMPLETED)
                    _release(self._serving)
        except asyncio.CancelledError:
            await self._cancel_writes()
            raise
        except BaseException as exc:
            # Surface, never vanish: later submits raise, waiting rows fail.
            self._failure = exc
            log.exception("batcher for %s stopped", self.sink.name)
            await self._cancel_writes()
            self._fail_pending(SinkError(f"batcher stopped: {exc!r}", retriable=True))
            raise

    def _start_write(self, rows: list[Row], owners: list[_Unit], index: list[int]) -> None:
        task = asyncio.create_task(self._write(rows, owners, index),
                                   name=f"batcher-{self.sink.name}-write")
        # Its units, so `_fail_pending` can fail their futures if it never ends.
        self._writes[task] = list(dict.fromkeys(owners))

    async def _settle(self, until: str) -> None:
        """Wait for one (FIRST_COMPLETED) or every (ALL_COMPLETED) write in
        progress; a write that died of something other than a sink error
        stops the routine."""
        if not self._writes:
            return
        finished, _ = await asyncio.wait(self._writes, return_when=until)
        for task in finished:
            # Raising leaves the task's units listed: `_fail_pending` fails them.
            if task.cancelled():  # only `_cancel_writes` may, and then nobody settles
                raise RuntimeError("a sink write was cancelled outside the batcher")
            if (exc := task.exception()) is not None:
                raise exc
            del self._writes[task]

    async def _cancel_writes(self) -> None:
        tasks = list(self._writes)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _take(self) -> tuple[list[Row], list[_Unit], list[int], list[int]]:
        taken = self._rows, self._owners, self._index, self._sizes
        self._rows, self._owners, self._index, self._sizes = [], [], [], []
        self._trigger.reset()
        return taken

    async def _write(self, rows: list[Row], owners: list[_Unit],  # noqa: PLR0912 - one loop, read top to bottom
                     index: list[int]) -> None:
        """Write `rows` as one batch: retry, or bisect on a data error."""
        attempt = 0
        failing = False  # counted in `_failing` while its failures are retried
        while True:
            started = time.perf_counter()
            try:
                await self.sink.write(rows)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is None or task.cancelling():
                    raise  # the batcher stops this write (closing): its units fail
                # Something inside the sink was cancelled under it: the rows are
                # not written, so retry as after an outage, never drop them.
                failure: BaseException = SinkError("the write was cancelled inside the sink",
                                                   retriable=True)
            except Exception as exc:  # noqa: BLE001 - a sink bug must not stop the routine
                failure = exc
            else:
                self._failing -= failing
                self._written(owners, time.perf_counter() - started)
                return
            # Settle what the sink stored; only the rest is retried or bisected.
            rows, owners, index = self._stored_part(failure, rows, owners, index,
                                                    time.perf_counter() - started)
            if not rows:
                self._failing -= failing
                return
            if isinstance(failure, Fenced) and failure.fenced:
                continue  # the rest was neither written nor fenced: write it now
            attempt += 1
            if (failure.retriable if isinstance(failure, SinkError)
                    else attempt < self._max_attempts):
                if not failing:
                    failing = True
                    self._failing += 1
                await self._retry_later(failure, attempt, len(rows))
                continue
            if failing:
                self._failing -= 1
            error = (failure if isinstance(failure, SinkError)
                     else SinkError(f"{type(failure).__name__}: {failure}", retriable=False))
            break
        m = self._metrics
        if m.fatal_errors is not None:
            m.fatal_errors.inc()
        if len(rows) == 1:
            log.warning("sink %s rejected row id=%s (%s[%d]@%d): %s", self.sink.name,
                        rows[0].id, rows[0].topic, rows[0].partition, rows[0].offset, error)
            if m.poison_rows is not None:
                m.poison_rows.inc()
            unit = owners[0]
            unit.refused.append(index[0])
            unit.why = str(error)
            unit.settle(1)
            return
        mid = len(rows) // 2
        await self._write(rows[:mid], owners[:mid], index[:mid])
        await self._write(rows[mid:], owners[mid:], index[mid:])

    def _stored_part(self, failure: BaseException, rows: list[Row], owners: list[_Unit],
                     index: list[int], seconds: float,
                     ) -> tuple[list[Row], list[_Unit], list[int]]:
        """Settle the rows of a failed batch that `failure` says were stored
        (`PartlyWritten`) or must never be (`Fenced`); return the others."""
        fenced = set(failure.fenced) if isinstance(failure, Fenced) else set()
        if not isinstance(failure, PartlyWritten) or not (failure.written or fenced):
            return rows, owners, index
        done = set(failure.written)
        if done:
            self._written([u for i, u in enumerate(owners) if i in done], seconds)
        if fenced:
            assert isinstance(failure, Fenced)
            for unit, count in Counter(owners[i] for i in fenced).items():
                unit.fenced = failure
                unit.settle(count)
            done |= fenced
        keep = [i for i in range(len(rows)) if i not in done]
        return [rows[i] for i in keep], [owners[i] for i in keep], [index[i] for i in keep]

    def _written(self, owners: list[_Unit], seconds: float) -> None:
        m = self._metrics
        if m.batch_rows is not None:
            m.batch_rows.observe(len(owners))
        if m.flush_seconds is not None:
            m.flush_seconds.observe(seconds)
        if m.rows_written is not None:
            m.rows_written.inc(len(owners))
        # Rows of a unit are adjacent: count them without a loop per row.
        for unit, count in Counter(owners).items():
            unit.settle(count)

    async def _retry_later(self, exc: BaseException, attempt: int, rows: int) -> None:
        if self._metrics.retriable_errors is not None:
            self._metrics.retriable_errors.inc()
        delay = self._backoff.delay(attempt + 1)
        log.warning("sink %s write of %d rows failed (attempt %d), retrying in %.2fs: %r",
                    self.sink.name, rows, attempt, delay, exc)
        await asyncio.sleep(delay)

    def _fail_pending(self, error: SinkError) -> None:
        writing = [unit for units in self._writes.values() for unit in units]
        units = dict.fromkeys([*writing, *self._taken, *self._owners])
        self._writes, self._taken = {}, []
        self._take()
        for unit in units:
            fut = unit.future
            if not fut.done():
                fut.set_exception(error)
                fut.add_done_callback(mark_retrieved)
        _release(self._serving)
        _release(self._flush_waiters)
