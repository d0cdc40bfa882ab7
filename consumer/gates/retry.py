"""Retry gate: exponential backoff with full jitter, capped, with an overall
deadline; in place, inside the same `process_run` call.

Retrying in place blocks only the worker holding this record, which the
dispatcher already serialises by the ordering mode (its key or partition), so
a message being retried holds back nothing the ordering does not require.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, TypeAlias

from consumer.backoff import Backoff
from consumer.config import Settings
from consumer.errors import ConsumerError
from consumer.gates.context import NextRun, RunContext, failure_of
from consumer.gates.instruments import GateMetrics

log = logging.getLogger("consumer.gates.retry")


def _names(exc: BaseException) -> Iterable[str]:
    for cls in type(exc).__mro__:
        yield cls.__name__
        yield f"{cls.__module__}.{cls.__qualname__}"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Pure: which errors to retry and how long to wait. No I/O, no clock.

    Classification (first match wins): a class named in `fatal_on`, then in
    `retry_on` (by class name or dotted path, subclasses included); then the
    exception's own `retriable` flag; an exception that has none (not ours) is
    retriable — a handler bug shows up as exhausted attempts, not silence.
    """

    max_attempts: int = 5
    base_delay: float = 0.1
    max_delay: float = 10.0
    deadline: float = 120.0
    retry_on: tuple[str, ...] = ()
    fatal_on: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(settings.retry_max_attempts, settings.retry_base_delay,
                   settings.retry_max_delay, settings.retry_deadline,
                   tuple(settings.retry_on), tuple(settings.fatal_on))

    def retriable(self, exc: BaseException) -> bool:
        names = set(_names(exc))
        if names.intersection(self.fatal_on):
            return False
        if names.intersection(self.retry_on):
            return True
        flag = getattr(exc, "retriable", None)
        return True if flag is None else bool(flag)

    @property
    def backoff(self) -> Backoff:
        # No floor: attempts are bounded, and a zero delay is a valid setting.
        return Backoff(self.base_delay, self.max_delay, min_delay=0.0)

    def cap(self, attempt: int) -> float:
        """Upper bound of the wait after failed attempt `attempt` (1-based)."""
        return self.backoff.cap(attempt)

    def delay(self, attempt: int, rand: float) -> float:
        """Full jitter: uniform in [0, cap]; `rand` is a draw from [0, 1]."""
        return self.backoff.delay(attempt, rand)

    def next_delay(self, exc: BaseException, attempt: int, started: float, now: float,
                   rand: float) -> float | None:
        """The wait before attempt `attempt + 1`, or None to give up: the error
        is fatal, attempts are used up, or the wait would end past the deadline
        (measured from `started`, the first attempt's start)."""
        if not self.retriable(exc) or attempt >= self.max_attempts:
            return None
        wait = self.delay(attempt, rand)
        if now + wait - started > self.deadline:
            return None
        return wait


#: Told of a failed attempt, inside its observation: (error, the wait
#: before the next attempt or None when the gate gives up).
AttemptFailed: TypeAlias = Callable[[BaseException, "float | None"], None]
#: Observes one attempt of a run (tracing: its `handle` spans); what it
#: yields, when not None, is told of the attempt's failure.
ObserveAttempt: TypeAlias = Callable[
    [RunContext], AbstractContextManager["AttemptFailed | None"]]


class Retry:
    """The retry gate, and the one place an attempt's emitted rows are kept
    or dropped: they are staged during the attempt and submitted to the
    batcher only when the whole attempt (user middleware included)
    succeeded, so a failed attempt writes nothing.

    A run of one is attempted per `RetryPolicy`; a run of many gets one
    attempt (the settle gate splits a failed run and sends its records back
    alone). Giving up never raises: it sets `run.error`, which sends the run
    to the dead-letter path. Sets `run.attempt` (1-based) before each
    attempt and the failure times on failures. A `CancelledError` the
    handler raised on its own (it awaited a future someone else cancelled)
    is not retried: waiting would not un-cancel that future."""

    def __init__(self, policy: RetryPolicy, metrics: GateMetrics | None = None, *,
                 observe: ObserveAttempt | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 rand: Callable[[], float] = random.random) -> None:
        self.policy = policy
        self._metrics = metrics or GateMetrics()
        self._observe = observe
        self._clock = clock
        self._rand = rand

    async def __call__(self, run: RunContext, call_next: NextRun) -> None:
        if len(run.records) > 1:
            await self._attempt(run, call_next, None)
        else:
            started = self._clock()
            while (wait := await self._attempt(run, call_next, started)) is not None:
                await asyncio.sleep(wait)
                run.attempt += 1
        if run.error is None or len(run.records) == 1:
            self._metrics.attempts(run.attempt)

    async def _attempt(self, run: RunContext, call_next: NextRun,
                       started: float | None) -> float | None:
        """One attempt. Returns the wait before the next one, or None when
        there is none: it succeeded, or it failed and `run.error` is set —
        the policy gave up, or (`started` None) it was a run's one attempt."""
        if self._observe is None:
            return self._judge(run, await self._try(run, call_next), started, None)
        with self._observe(run) as failed:
            return self._judge(run, await self._try(run, call_next), started, failed)

    @staticmethod
    async def _try(run: RunContext, call_next: NextRun) -> BaseException | None:
        run.staged = []
        if (exc := await failure_of(call_next, run)) is not None:
            return exc
        try:
            run.submit_staged()
        except ConsumerError as exc:  # the batcher is not running: retriable
            run.drop_units()
            return exc
        return None

    def _judge(self, run: RunContext, exc: BaseException | None, started: float | None,
               failed: AttemptFailed | None) -> float | None:
        if exc is None:
            return None
        run.failed(exc)
        if started is None or isinstance(exc, asyncio.CancelledError):
            wait = None
        else:
            wait = self.policy.next_delay(exc, run.attempt, started, self._clock(), self._rand())
        if failed is not None:
            failed(exc, wait)
        if wait is None:
            run.error = exc
            if started is not None:
                self._gave_up(run, exc)
            return None
        log.info("attempt %d failed for %s[%d]@%d, retrying in %.3fs: %r", run.attempt,
                 run.topic, run.partition, run.records[0].offset, wait, exc)
        self._metrics.retry(run.topic)
        return wait

    @staticmethod
    def _gave_up(run: RunContext, exc: BaseException) -> None:
        event_id = getattr(run.events[0], "id", None) if run.events else None
        log.warning("event %s failed after %d attempt(s): %s: %s", event_id, run.attempt,
                    type(exc).__name__, exc,
                    extra={"correlation_id": event_id, "topic": run.topic,
                           "partition": run.partition, "offset": run.records[0].offset,
                           "attempts": run.attempt})


def describe(policy: RetryPolicy) -> dict[str, Any]:
    """For the start-up log line."""
    return {"max_attempts": policy.max_attempts, "base_delay": policy.base_delay,
            "max_delay": policy.max_delay, "deadline": policy.deadline}
