"""The one backoff: capped exponential with full jitter."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumer.backoff import Backoff


@given(st.floats(0.001, 10), st.floats(0.001, 100), st.integers(-5, 10_000),
       st.floats(0, 1))
def test_delay_stays_between_the_floor_and_the_cap(base: float, cap: float, attempt: int,
                                                   rand: float) -> None:
    backoff = Backoff(base, cap)
    delay = backoff.delay(attempt, rand)
    assert backoff.min_delay <= delay <= max(backoff.min_delay, min(cap, backoff.cap(attempt)))
    assert backoff.cap(attempt) <= cap


def test_caps_double_until_the_maximum() -> None:
    backoff = Backoff(0.1, 1.0)
    assert [backoff.cap(a) for a in (1, 2, 3, 4, 5)] == [0.1, 0.2, 0.4, 0.8, 1.0]
    assert backoff.delay(3, 1.0) == 0.4
    assert backoff.delay(3, 0.0) == backoff.min_delay  # never a spin


def test_random_draws_vary_within_the_cap() -> None:
    backoff = Backoff(1.0, 1.0)
    draws = {backoff.delay(1) for _ in range(50)}
    assert len(draws) > 1
    assert all(0 < d <= 1.0 for d in draws)
