"""Rate-limit gate: an adaptive token bucket per downstream name, shared by
every worker of the process.

`TokenBucket` is the pure core (takes `now`). `Limiter` serves waiters in
arrival order from one `_dispatch_routine` per downstream: FIFO-fair, and a
cancelled waiter just leaves the queue. Waiting happens inside the handler, so
it counts as in flight: a slow downstream fills the in-flight limit and the
engine pauses partitions instead of piling up work.

Adaptive (AIMD): a 429/503 holds the downstream for its Retry-After (or
`default_hold`) and cuts the rate by `decrease` — once per hold, since the
answers to requests already in the air say the same thing — then the rate
grows back by `recovery` requests/s each second, up to the configured rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from consumer.gates.instruments import GateMetrics


@dataclass(slots=True)
class TokenBucket:
    """Pure token bucket with hold and AIMD rate. Invariant: over any interval
    of length T, at most `burst + rate * T` takes succeed."""

    rate: float
    burst: int
    recovery: float = 0.0  # requests/s regained per second; 0 → rate / 5
    decrease: float = 0.5
    min_rate: float = 0.0  # 0 → rate / 20
    default_hold: float = 1.0
    current: float = field(init=False)
    tokens: float = field(init=False)
    held_until: float = field(default=-math.inf, init=False)
    updated: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.recovery = self.recovery or self.rate / 5
        self.min_rate = self.min_rate or self.rate / 20
        self.current = self.rate
        self.tokens = float(self.burst)

    def _advance(self, now: float) -> None:
        if self.updated is None or now <= self.updated:
            self.updated = now if self.updated is None else self.updated
            return
        # Nothing accrues during a hold.
        start = max(self.updated, self.held_until)
        if now > start:
            span = now - start
            # Tokens at the rate in force at the start (the lower one while
            # recovering): conservative, the bound never depends on rounding.
            self.tokens = min(float(self.burst), self.tokens + self.current * span)
            self.current = min(self.rate, self.current + self.recovery * span)
        self.updated = now

    def wait_time(self, now: float) -> float:
        """Seconds until a take can succeed (0 = now), assuming nothing changes."""
        self._advance(now)
        if now < self.held_until:
            return self.held_until - now
        if self.tokens >= 1.0:
            return 0.0
        return (1.0 - self.tokens) / self.current

    def try_take(self, now: float) -> bool:
        self._advance(now)
        if now < self.held_until or self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def throttle(self, now: float, retry_after: float | None) -> None:
        """The downstream said 429/503: hold and slow down."""
        self._advance(now)
        if now >= self.held_until:
            self.current = max(self.min_rate, self.current * self.decrease)
        hold = self.default_hold if retry_after is None else max(0.0, retry_after)
        self.held_until = max(self.held_until, now + hold)
        # No burst right after the hold: tokens restart from empty.
        self.tokens = min(self.tokens, 0.0)

    def held(self, now: float) -> bool:
        return now < self.held_until


class Limiter:
    """One downstream's bucket and its FIFO queue of waiters."""

    def __init__(self, name: str, bucket: TokenBucket, *, metrics: GateMetrics | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.bucket = bucket
        self._metrics = metrics or GateMetrics()
        self._clock = clock
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._metrics.limiter_rate(name, bucket.current)

    @property
    def waiting(self) -> int:
        return sum(1 for f in self._waiters if not f.done())

    async def acquire(self) -> None:
        """Wait for this downstream's next slot, in arrival order. Cancellable
        (the slot is not consumed). Raises `RuntimeError` once closed."""
        if self._closed:
            raise RuntimeError(f"rate limiter {self.name} is closed")
        started = self._clock()
        if not self._waiters and self.bucket.try_take(started):
            self._metrics.limiter_wait(self.name, 0.0)
            self._metrics.limiter_rate(self.name, self.bucket.current)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        if self._task is None:
            self._task = asyncio.create_task(self._dispatch_routine(),
                                             name=f"ratelimit-{self.name}")
        self._wake.set()
        try:
            await fut
        finally:
            self._metrics.limiter_wait(self.name, self._clock() - started)
            self._metrics.limiter_rate(self.name, self.bucket.current)

    def throttled(self, retry_after: float | None, status: int = 429) -> None:
        self.bucket.throttle(self._clock(), retry_after)
        self._metrics.throttled(self.name, status)
        self._metrics.limiter_rate(self.name, self.bucket.current)
        self._wake.set()

    async def _dispatch_routine(self) -> None:
        while True:
            while self._waiters and self._waiters[0].done():
                self._waiters.popleft()  # cancelled while waiting
            if not self._waiters:
                self._wake.clear()
                await self._wake.wait()
                continue
            now = self._clock()
            if self.bucket.try_take(now):
                self._waiters.popleft().set_result(None)
                continue
            wait = max(self.bucket.wait_time(now), 0.001)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.cancel()


class Limiters:
    """Limiters by downstream name, created on first use with the configured
    rate and burst (the same for every name)."""

    def __init__(self, rate: float, burst: int, *, metrics: GateMetrics | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._metrics = metrics or GateMetrics()
        self._clock = clock
        self._by_name: dict[str, Limiter] = {}

    def get(self, name: str) -> Limiter:
        limiter = self._by_name.get(name)
        if limiter is None:
            limiter = Limiter(name, TokenBucket(self.rate, self.burst),
                              metrics=self._metrics, clock=self._clock)
            self._by_name[name] = limiter
        return limiter

    async def close(self) -> None:
        for limiter in self._by_name.values():
            await limiter.close()
