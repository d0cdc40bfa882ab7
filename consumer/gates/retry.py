"""Retry gate: exponential backoff with full jitter, capped, with an overall
deadline; in place, inside the same `process` call.

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
from dataclasses import dataclass
from typing import Any

from consumer.backoff import Backoff
from consumer.config import Settings
from consumer.gates.context import Context, Next

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


class RetryMiddleware:
    """Runs the rest of the chain again per `RetryPolicy`; re-raises the last
    error when it gives up. Sets `ctx.attempt` (1-based) before each attempt and
    `ctx.first_failure` / `ctx.last_failure` (wall-clock seconds) on failures."""

    def __init__(self, policy: RetryPolicy, *, on_retry: Callable[[Context], None] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 rand: Callable[[], float] = random.random) -> None:
        self.policy = policy
        self._on_retry = on_retry
        self._clock = clock
        self._rand = rand

    async def __call__(self, ctx: Context, call_next: Next) -> None:
        started = self._clock()
        attempt = 1
        while True:
            ctx.attempt = attempt
            wait = await self._attempt(ctx, call_next, started)
            if wait is None:
                return
            await asyncio.sleep(wait)
            attempt += 1

    async def _attempt(self, ctx: Context, call_next: Next, started: float) -> float | None:
        """One attempt: None when it succeeded, the wait before the next one
        when it failed and another is due; re-raises the error when giving up."""
        try:
            await call_next(ctx)
        except Exception as exc:
            ctx.failed(exc)
            wait = self.policy.next_delay(exc, ctx.attempt, started, self._clock(), self._rand())
            if wait is None:
                raise
            self._retrying(ctx, exc, wait)
            return wait
        return None

    def _retrying(self, ctx: Context, exc: Exception, wait: float) -> None:
        log.info("attempt %d failed for %s[%d]@%d, retrying in %.3fs: %r", ctx.attempt,
                 ctx.topic, ctx.partition, ctx.offset, wait, exc)
        if self._on_retry is not None:
            self._on_retry(ctx)


def describe(policy: RetryPolicy) -> dict[str, Any]:
    """For the start-up log line."""
    return {"max_attempts": policy.max_attempts, "base_delay": policy.base_delay,
            "max_delay": policy.max_delay, "deadline": policy.deadline}
