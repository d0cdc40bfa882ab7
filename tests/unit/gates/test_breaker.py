"""CircuitBreaker: ratio over a full window, or a run of consecutive ones."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumer.gates.breaker import CircuitBreaker


def test_consecutive_run_trips() -> None:
    breaker = CircuitBreaker(ratio=1.0, window=1000, consecutive=3)
    assert not breaker.record(True)
    assert not breaker.record(True)
    assert not breaker.record(False)  # the run restarts
    assert not breaker.record(True)
    assert not breaker.record(True)
    assert breaker.record(True)
    assert breaker.open
    assert "3 consecutive" in (breaker.reason or "")
    assert not breaker.record(True)  # tripped once; stays open


def test_ratio_needs_a_full_window() -> None:
    breaker = CircuitBreaker(ratio=0.5, window=10, consecutive=1000)
    for _ in range(5):
        breaker.record(False)
        breaker.record(True)
    assert not breaker.open  # exactly half is not more than half
    assert breaker.record(True)  # 6 of the last 10


def test_first_failures_do_not_trip_a_ratio() -> None:
    breaker = CircuitBreaker(ratio=0.1, window=100, consecutive=50)
    for _ in range(20):
        breaker.record(True)
    assert not breaker.open


@given(st.lists(st.booleans(), max_size=400), st.integers(1, 50), st.integers(1, 50),
       st.floats(0.01, 1.0))
def test_trips_exactly_when_the_rule_says(outcomes: list[bool], window: int, run: int,
                                          ratio: float) -> None:
    breaker = CircuitBreaker(ratio=ratio, window=window, consecutive=run)
    for i, dead in enumerate(outcomes):
        tripped = breaker.record(dead)
        seen = outcomes[: i + 1]
        recent = seen[-window:]
        streak = len(seen) - max((j + 1 for j, d in enumerate(seen) if not d), default=0)
        expected = streak >= run or (len(recent) >= window and sum(recent) > ratio * window)
        assert tripped == expected
        if tripped:
            break


@given(st.lists(st.tuples(st.booleans(), st.integers(1, 30)), max_size=60),
       st.integers(1, 40), st.integers(1, 40), st.sampled_from([0.1, 0.5, 0.9]))
def test_record_passed_is_record_false_that_many_times(
    steps: list[tuple[bool, int]], window: int, consecutive: int, ratio: float,
) -> None:
    bulk = CircuitBreaker(ratio=ratio, window=window, consecutive=consecutive)
    single = CircuitBreaker(ratio=ratio, window=window, consecutive=consecutive)
    for dead, count in steps:
        if dead:
            assert bulk.record(True) == single.record(True)
            continue
        tripped = [single.record(False) for _ in range(count)]
        assert bulk.record_passed(count) == any(tripped)
        assert (bulk.open, bulk.reason) == (single.open, single.reason)
    assert (bulk.open, bulk.reason) == (single.open, single.reason)
