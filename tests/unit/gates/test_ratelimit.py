"""TokenBucket (pure) and the Limiter's FIFO queue; Retry-After parsing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.gates.http import MAX_RETRY_AFTER, parse_retry_after
from consumer.gates.ratelimit import Limiter, TokenBucket

ops = st.lists(st.tuples(st.floats(0.0, 0.5), st.sampled_from(["take", "take", "take",
                                                                "throttle"]),
                         st.one_of(st.none(), st.floats(0.0, 3.0))),
               max_size=300)


@given(ops, st.floats(0.5, 50.0), st.integers(1, 20))
def test_never_more_than_burst_plus_rate_per_window(
        steps: list[tuple[float, str, float | None]], rate: float, burst: int) -> None:
    bucket = TokenBucket(rate, burst)
    now, taken = 0.0, []
    for gap, op, retry_after in steps:
        now += gap
        if op == "take":
            if bucket.try_take(now):
                taken.append(now)
        else:
            bucket.throttle(now, retry_after)
        assert bucket.min_rate <= bucket.current <= rate
        assert bucket.tokens <= burst
    for i, start in enumerate(taken):
        for width in (0.25, 1.0, 3.0):
            inside = sum(1 for t in taken[i:] if t < start + width)
            assert inside <= burst + rate * width + 1e-6


def test_wait_time_matches_try_take() -> None:
    bucket = TokenBucket(10.0, 2)
    assert bucket.try_take(0.0)
    assert bucket.try_take(0.0)
    assert not bucket.try_take(0.0)
    assert bucket.wait_time(0.0) == pytest.approx(0.1)
    assert not bucket.try_take(0.09)
    assert bucket.try_take(0.1)


def test_throttle_holds_then_recovers_additively() -> None:
    bucket = TokenBucket(10.0, 5)
    bucket.throttle(1.0, 2.0)
    assert bucket.current == 5.0
    assert bucket.tokens == 0.0
    bucket.throttle(1.5, 2.0)  # a second answer within the same hold: no second cut
    assert bucket.current == 5.0
    assert bucket.wait_time(1.5) == pytest.approx(2.0)  # the hold was extended to 3.5
    assert not bucket.try_take(3.4)
    assert bucket.held(3.4)
    assert not bucket.held(3.5)
    # recovery: +rate/5 per second after the hold ends at 3.5
    bucket.wait_time(4.5)
    assert bucket.current == pytest.approx(7.0)
    bucket.wait_time(10.0)
    assert bucket.current == 10.0


def test_rate_never_drops_below_floor() -> None:
    bucket = TokenBucket(10.0, 1)
    for _ in range(20):
        bucket.throttle(1.0, 0.0)  # a zero hold: each answer cuts again
    assert bucket.current == pytest.approx(0.5)


async def test_limiter_is_fifo_and_cancellable() -> None:
    limiter = Limiter("down", TokenBucket(200.0, 1))
    order: list[int] = []

    async def worker(i: int) -> None:
        await limiter.acquire()
        order.append(i)

    tasks = [asyncio.create_task(worker(i)) for i in range(8)]
    await asyncio.sleep(0)
    tasks[3].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert order == [0, 1, 2, 4, 5, 6, 7]
    await limiter.close()


async def test_throttle_holds_waiters() -> None:
    limiter = Limiter("down", TokenBucket(100.0, 1))
    await limiter.acquire()
    limiter.throttled(0.2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await limiter.acquire()
    assert loop.time() - started >= 0.19
    await limiter.close()
    with pytest.raises(RuntimeError):
        await limiter.acquire()


def test_retry_after_seconds_and_dates() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after("2", now) == 2.0
    assert parse_retry_after(" 1.5 ", now) == 1.5
    assert parse_retry_after("-3", now) == 0.0
    date = format_datetime(datetime(2026, 1, 1, 12, 0, 3, tzinfo=UTC), usegmt=True)
    assert parse_retry_after(date, now) == pytest.approx(3.0)
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("nan", now) is None
    assert parse_retry_after("1e12", now) == MAX_RETRY_AFTER


@given(st.text(max_size=40))
def test_retry_after_never_raises(value: str) -> None:
    result = parse_retry_after(value, 1_700_000_000.0)
    assert result is None or 0.0 <= result <= MAX_RETRY_AFTER
