"""Batcher: collects rows for one sink and writes them in batches.

Flow: `submit(row)` (sync, never blocks) buffers the row and returns a future;
the background `_flush_routine` writes a batch when `BatchTrigger` says it is
due (items, bytes or latency), one write at a time (keeps order per sink, and
one connection's worth of load on the database). The future resolves when the
row's batch is written.

Failures: a retriable `SinkError` (the sink is away) is retried forever with
capped, jittered backoff — the rows stay in flight, so the engine's in-flight
limit pauses partitions instead of buffering without bound. A non-retriable
error (the data) bisects the batch until the rows that fail are isolated:
their futures fail with `SinkError(retriable=False)` (the pipeline dead-letters
those messages), the rest are written. Any other exception is retried
`retry_max_attempts` times, then treated as a data error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from consumer.config import Settings
from consumer.errors import SinkError
from consumer.sinks.base import Row
from consumer.sinks.trigger import BatchTrigger, split
from consumer.types import Sink

log = logging.getLogger("consumer.sinks")

_Entry = tuple[Row, "asyncio.Future[None]"]
#: Floor for the retry delay: a zero base delay must not spin on a dead sink.
_MIN_DELAY = 0.05


class _SinkMetrics:
    """The batcher's view of `Metrics`; every instrument optional (None = off)."""

    def __init__(self, metrics: Any, sink: str) -> None:
        def child(name: str, **labels: str) -> Any:
            family = getattr(metrics, name, None) if metrics is not None else None
            return family.labels(sink=sink, **labels) if family is not None else None

        self.batch_rows = child("sink_batch_rows")
        self.flush_seconds = child("sink_flush_seconds")
        self.rows_written = child("sink_rows_written")
        self.retriable_errors = child("sink_errors", retriable="true")
        self.fatal_errors = child("sink_errors", retriable="false")
        self.poison_rows = child("sink_poison_rows")


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

    def __init__(self, sink: Sink, settings: Settings, metrics: Any = None,
                 *, clock: Callable[[], float] = time.monotonic) -> None:
        self.sink = sink
        self._trigger = BatchTrigger(settings.batch_max_items, settings.batch_max_bytes,
                                     settings.batch_max_latency)
        self._max_items = settings.batch_max_items
        self._max_bytes = settings.batch_max_bytes
        self._base_delay = max(settings.retry_base_delay, _MIN_DELAY)
        self._max_delay = max(settings.retry_max_delay, self._base_delay)
        self._max_attempts = settings.retry_max_attempts
        self._clock = clock
        self._metrics = _SinkMetrics(metrics, sink.name)
        self._pending: list[_Entry] = []
        self._sizes: list[int] = []  # parallel to _pending: each row's weight, computed once
        #: Rows taken for the write in progress (failed too if it is cancelled).
        self._taken: list[_Entry] = []
        self._flush_waiters: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._writing = False
        self._failure: BaseException | None = None
        #: False while the sink answers with retriable errors (for /readyz).
        self.writing_ok = True

    @property
    def pending(self) -> int:
        """Rows buffered and not yet taken for writing."""
        return len(self._pending)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._flush_routine(),
                                             name=f"batcher-{self.sink.name}")

    def submit(self, row: Row) -> asyncio.Future[None]:
        """Buffer `row`; never blocks. The future resolves once the batch holding
        the row is written, or fails with `SinkError(retriable=False)` when the
        row was isolated as one the sink rejects. Raises `SinkError` (retriable)
        when the batcher is closed or its routine died."""
        if self._failure is not None:
            raise SinkError(f"batcher for {self.sink.name} stopped: {self._failure!r}",
                            retriable=True) from self._failure
        if self._closing or self._task is None:
            raise SinkError(f"batcher for {self.sink.name} is not running", retriable=True)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        size = row.size()
        self._pending.append((row, fut))
        self._sizes.append(size)
        full = self._trigger.add(size, self._clock())
        if full or len(self._pending) == 1:
            # Full: write now. First row: the routine must learn the new deadline.
            self._wake.set()
        return fut

    async def flush(self) -> None:
        """Write what is buffered now (and wait for a write in progress); return
        when that was attempted. Rows that failed carry it on their futures."""
        if self._task is None or self._task.done():
            return
        if not self._pending and not self._writing:
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
                if not self._pending and not self._flush_waiters:
                    if self._closing:
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
                entries, self._pending = self._pending, []
                sizes, self._sizes = self._sizes, []
                waiters, self._flush_waiters = self._flush_waiters, []
                self._trigger.reset()
                self._writing = True
                self._taken = entries
                try:
                    for start, stop in split(sizes, self._max_items, self._max_bytes):
                        await self._write(entries[start:stop])
                finally:
                    self._writing = False
                # Kept on failure so `_fail_pending` can fail those futures.
                self._taken = []
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            # Surface, never vanish: later submits raise, waiting rows fail.
            self._failure = exc
            log.exception("batcher for %s stopped", self.sink.name)
            self._fail_pending(SinkError(f"batcher stopped: {exc!r}", retriable=True))
            raise

    async def _write(self, entries: list[_Entry]) -> None:
        """Write `entries` as one batch: retry, or bisect on a data error."""
        rows = [row for row, _ in entries]
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                await self.sink.write(rows)
            except SinkError as exc:
                if exc.retriable:
                    attempt += 1
                    await self._retry_later(exc, attempt, len(rows))
                    continue
                error: SinkError = exc
            except Exception as exc:  # noqa: BLE001 - a sink bug must not stop the routine
                attempt += 1
                if attempt < self._max_attempts:
                    await self._retry_later(exc, attempt, len(rows))
                    continue
                error = SinkError(f"{type(exc).__name__}: {exc}", retriable=False)
            else:
                self._written(entries, time.perf_counter() - started)
                return
            break
        m = self._metrics
        if m.fatal_errors is not None:
            m.fatal_errors.inc()
        if len(entries) == 1:
            log.warning("sink %s rejected row id=%s (%s[%d]@%d): %s", self.sink.name,
                        rows[0].id, rows[0].topic, rows[0].partition, rows[0].offset, error)
            if m.poison_rows is not None:
                m.poison_rows.inc()
            fut = entries[0][1]
            if not fut.done():
                fut.set_exception(SinkError(str(error), retriable=False))
            return
        mid = len(entries) // 2
        await self._write(entries[:mid])
        await self._write(entries[mid:])

    def _written(self, entries: list[_Entry], seconds: float) -> None:
        self.writing_ok = True
        m = self._metrics
        if m.batch_rows is not None:
            m.batch_rows.observe(len(entries))
        if m.flush_seconds is not None:
            m.flush_seconds.observe(seconds)
        if m.rows_written is not None:
            m.rows_written.inc(len(entries))
        for _, fut in entries:
            if not fut.done():
                fut.set_result(None)

    async def _retry_later(self, exc: BaseException, attempt: int, rows: int) -> None:
        self.writing_ok = False
        if self._metrics.retriable_errors is not None:
            self._metrics.retriable_errors.inc()
        # Full jitter, capped: an outage retries forever at most max_delay apart.
        delay = random.uniform(0, min(self._max_delay, self._base_delay * 2 ** min(attempt, 30)))
        log.warning("sink %s write of %d rows failed (attempt %d), retrying in %.2fs: %r",
                    self.sink.name, rows, attempt, delay, exc)
        await asyncio.sleep(max(delay, _MIN_DELAY))

    def _fail_pending(self, error: SinkError) -> None:
        entries = self._taken + self._pending
        self._taken, self._pending, self._sizes = [], [], []
        self._trigger.reset()
        for _, fut in entries:
            if not fut.done():
                fut.set_exception(error)
                fut.add_done_callback(mark_retrieved)
        waiters, self._flush_waiters = self._flush_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
