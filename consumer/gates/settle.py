"""Settling gate: the error boundary and the one place a run's outcome is
routed — every emitted row written → `done`; the run failed (invalid, or the
retry gate gave up) or the sink refused a row → dead-letter topic → `done`
once the broker acknowledged the send. `done` is never called for a message
whose dead-letter send is unacknowledged: it stays in flight.

It sits behind validation (and behind `singles` for per-event handlers), so
it sees each part of a run in record order. A run of many that failed as a
whole (the retry gate gives a run one attempt) is split here: each record
goes down the rest of the chain again alone, with its own attempts, and is
settled before the next one starts. The breaker counts
a handled message when its handler returns, not when its rows are written:
good messages wait for their batch while bad ones are dead-lettered at once,
so counting in completion order would see a run of failures the input does
not have.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeAlias

from consumer.errors import DeadLetterError
from consumer.gates.breaker import CircuitBreaker
from consumer.gates.context import NextRun, RunContext, failure_of
from consumer.gates.dlq import Publisher, dead_letter_headers
from consumer.gates.instruments import GateMetrics
from consumer.types import Record, Undecodable

log = logging.getLogger("consumer.gates.settle")

#: Observes one dead-letter send (tracing: the message's error status and a
#: `send` span): (record, error, attempts, dead-letter topic).
ObserveDeadLetter: TypeAlias = Callable[[Record, BaseException, int, str],
                                        AbstractContextManager[None]]


class Settle:
    """The gate. It owns the dead-letter sends that write callbacks start:
    `drain` waits for them, `cancel` ends the rest."""

    def __init__(self, publisher: Publisher, breaker: CircuitBreaker, metrics: GateMetrics, *,
                 group: str, observe: ObserveDeadLetter | None = None) -> None:
        self.publisher = publisher
        self.breaker = breaker
        self._metrics = metrics
        self._group = group
        self._observe = observe
        self._tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, run: RunContext, call_next: NextRun) -> None:
        if self.breaker.open:
            return  # consumption stops: the rest stays in flight
        # A run that arrives failed was refused by validation: not handled.
        if run.error is None and (exc := await failure_of(call_next, run)) is not None:
            # An error got past the retry gate: a gate's own failure.
            run.failed(exc)
            run.error = exc
        parts = run.singles() if run.error is not None and len(run.records) > 1 else ()
        # Rows emitted after the handler returned (from a task it left
        # behind) would not be waited for: refuse them.
        run.submit = None
        if run.error is None:
            if self.breaker.record_passed(len(run.records)):
                self._tripped()
            self._when_written(run)
            return
        if run.units:
            # Its rows went to the sink (a gate failed after the handler
            # succeeded): never also dead-letter it. Consumed again after a
            # restart.
            log.error("%s[%d]@%d..%d left in flight after %r", run.topic, run.partition,
                      run.records[0].offset, run.records[-1].offset, run.error)
            run.drop_units()
            return
        if parts:
            # A run failed as a whole: each record again alone — its own
            # attempts, its own outcome, the breaker judged between them.
            log.info("run of %d from %s[%d]@%d failed (%r); split to single records",
                     len(run.records), run.topic, run.partition, run.records[0].offset,
                     run.error)
            for part in parts:
                await self(part, call_next)
            return
        await self.dead_letter(run, run.records[0], run.error)

    def _when_written(self, run: RunContext) -> None:
        """`done` once every emitted unit settled — from the futures'
        callbacks, so the worker is free meanwhile."""
        if not run.units:
            self._succeeded(run, run.records)
            return
        remaining = len(run.units)

        def settled(_: asyncio.Future[None]) -> None:
            nonlocal remaining
            remaining -= 1
            if not remaining:
                self._written(run)

        for fut in run.units:
            fut.add_done_callback(settled)

    def _written(self, run: RunContext) -> None:
        """Every unit settled: done for the records whose rows were all
        written, dead-letter those with a refused row, and leave in flight
        those whose rows were not written (shutting down)."""
        good, refused, stuck = run.outcome()
        self._succeeded(run, good)
        now = time.time()
        for i, exc in refused:
            self._spawn(self.dead_letter(run, run.records[i], exc, failed_at=now))
        if stuck:
            log.info("%d records of %s[%d] left in flight: their rows were not written",
                     len(stuck), run.topic, run.partition)

    def _succeeded(self, run: RunContext, records: Sequence[Record]) -> None:
        if records:
            run.done(records)
            self._metrics.outcome(records[0].topic, "ok", len(records))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def dead_letter(self, run: RunContext, record: Record, exc: BaseException, *,
                          failed_at: float | None = None) -> None:
        """Send to the dead-letter topic; `done` only after the acknowledgement.
        `failed_at`: when the failure happened, if not at the run's last
        attempt (the sink refused a row later)."""
        now = time.time()
        last = failed_at or run.last_failure or now
        headers = dead_letter_headers(
            record, exc, attempts=run.attempt, group=self._group,
            first_failure=run.first_failure or last, last_failure=last)
        value = record.value
        raw = value.raw if isinstance(value, Undecodable) else value
        try:
            if self._observe is None:
                await self.publisher.send(record.key, raw, headers)
            else:
                with self._observe(record, exc, run.attempt, self.publisher.topic):
                    await self.publisher.send(record.key, raw, headers)
        except DeadLetterError:
            log.warning("%s[%d]@%d not dead-lettered before close; left in flight",
                        record.topic, record.partition, record.offset)
            return
        run.done((record,))
        error_type = type(exc).__name__
        self._metrics.dead_lettered(record.topic, error_type)
        self._metrics.outcome(record.topic, "invalid" if error_type == "InvalidEvent"
                              else "dead_lettered")
        log.warning("dead-lettered %s[%d]@%d to %s after %d attempt(s): %s: %s", record.topic,
                    record.partition, record.offset, self.publisher.topic, run.attempt,
                    error_type, exc)
        if self.breaker.record(True):
            self._tripped()

    def _tripped(self) -> None:
        self._metrics.breaker(True)
        log.critical("dead-letter circuit breaker OPEN: %s; consumption stops and the "
                     "service reports unhealthy — check the handler or the producer",
                     self.breaker.reason)

    async def drain(self, within: float) -> None:
        """Let dead-letter sends started by write callbacks finish while the
        producer is still up."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=within)

    async def cancel(self) -> None:
        """Cancel the sends still running (their messages stay in flight)."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
