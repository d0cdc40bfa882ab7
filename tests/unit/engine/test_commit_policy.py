from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.engine.commit_policy import CommitPolicy


@given(st.floats(0.01, 100), st.integers(1, 10_000), st.floats(0, 1e6), st.floats(0, 1e6),
       st.integers(-5, 20_000))
def test_due_exactly_when_something_new_and_count_or_interval_reached(
    interval: float, every: int, last: float, elapsed: float, done: int
) -> None:
    policy = CommitPolicy(interval, every)
    now = last + elapsed
    due = policy.due(now, last, done)
    if done <= 0:
        assert not due
    else:
        assert due == (done >= every or now - last >= interval)


def test_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="interval"):
        CommitPolicy(0, 10)
    with pytest.raises(ValueError, match="every"):
        CommitPolicy(1, 0)
