"""RetryPolicy: classification, full-jitter bounds, attempts and deadline."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumer.errors import DeadLetterError, FatalError, TransientError
from consumer.gates.retry import RetryPolicy
from schemas import InvalidEvent


def test_classification_follows_flag_then_lists() -> None:
    policy = RetryPolicy()
    assert policy.retriable(TransientError("x"))
    assert policy.retriable(DeadLetterError("x"))
    assert not policy.retriable(FatalError("x"))
    assert not policy.retriable(InvalidEvent("empty"))
    assert policy.retriable(ValueError("not ours: retriable by default"))
    assert not policy.retriable(TransientError("x", retriable=False))


def test_lists_override_the_flag() -> None:
    policy = RetryPolicy(retry_on=("FatalError",), fatal_on=("ValueError", "builtins.KeyError"))
    assert policy.retriable(FatalError("x"))
    assert not policy.retriable(ValueError("x"))
    assert not policy.retriable(KeyError("x"))
    # Subclasses match by their bases' names.
    assert not policy.retriable(UnicodeDecodeError("utf-8", b"", 0, 1, "bad"))


def test_attempts_are_bounded() -> None:
    policy = RetryPolicy(max_attempts=3, base_delay=0.1, max_delay=1.0, deadline=100)
    exc = TransientError("x")
    assert policy.next_delay(exc, 1, 0.0, 0.0, 1.0) == 0.1
    assert policy.next_delay(exc, 2, 0.0, 0.0, 1.0) == 0.2
    assert policy.next_delay(exc, 3, 0.0, 0.0, 1.0) is None
    assert policy.next_delay(FatalError("x"), 1, 0.0, 0.0, 1.0) is None


def test_deadline_stops_retries() -> None:
    policy = RetryPolicy(max_attempts=100, base_delay=1.0, max_delay=1.0, deadline=10.0)
    exc = TransientError("x")
    assert policy.next_delay(exc, 5, 0.0, 8.5, 1.0) == 1.0
    assert policy.next_delay(exc, 5, 0.0, 9.5, 1.0) is None


@given(attempt=st.integers(1, 10_000), rand=st.floats(0.0, 1.0),
       base=st.floats(0.0, 10.0), extra=st.floats(0.0, 100.0))
def test_full_jitter_within_cap(attempt: int, rand: float, base: float, extra: float) -> None:
    policy = RetryPolicy(base_delay=base, max_delay=base + extra)
    delay = policy.delay(attempt, rand)
    assert 0.0 <= delay <= policy.cap(attempt) <= policy.max_delay
    assert policy.cap(attempt) <= policy.cap(attempt + 1)


@given(attempts=st.integers(1, 20), delays=st.lists(st.floats(0.0, 1.0), min_size=30,
                                                    max_size=30),
       deadline=st.floats(0.1, 20.0))
def test_total_wait_respects_deadline(attempts: int, delays: list[float],
                                      deadline: float) -> None:
    policy = RetryPolicy(max_attempts=attempts, base_delay=0.5, max_delay=4.0,
                         deadline=deadline)
    now, attempt = 0.0, 1
    while (wait := policy.next_delay(TransientError("x"), attempt, 0.0, now,
                                     delays[attempt])) is not None:
        now += wait
        attempt += 1
    assert attempt <= attempts
    assert now <= deadline
