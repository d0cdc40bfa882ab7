"""BatchTrigger and split: pure, property-tested."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.sinks.trigger import BatchTrigger, split, whole_records

limits = st.tuples(st.integers(1, 50), st.integers(1, 5_000), st.floats(0.001, 10.0))
steps = st.lists(st.tuples(st.integers(0, 2_000), st.floats(0.0, 3.0)), max_size=100)


@given(limits, steps)
def test_due_matches_the_three_limits(lim: tuple[int, int, float],
                                      ops: list[tuple[int, float]]) -> None:
    max_items, max_bytes, max_latency = lim
    trigger = BatchTrigger(max_items, max_bytes, max_latency)
    now = 0.0
    items, weight, first = 0, 0, None
    for size, dt in ops:
        now += dt
        if trigger.due(now):
            trigger.reset()
            items, weight, first = 0, 0, None
        full = trigger.add(size, now)
        items += 1
        weight += size
        first = now if first is None else first
        assert full == (items >= max_items or weight >= max_bytes)
        assert trigger.deadline() == first + max_latency
        # Never more than max_items pending without the batch being due.
        assert items <= max_items or trigger.due(now)
        expected = items >= max_items or weight >= max_bytes or now >= first + max_latency
        assert trigger.due(now) == expected
        deadline = trigger.deadline()
        assert deadline is not None
        assert trigger.due(deadline)


def test_empty_is_never_due() -> None:
    trigger = BatchTrigger(1, 1, 0.1)
    assert not trigger.due(1e9)
    assert trigger.deadline() is None


def test_rejects_nonpositive_limits() -> None:
    with pytest.raises(ValueError, match="positive"):
        BatchTrigger(0, 1, 1.0)


@given(st.lists(st.integers(0, 3_000), max_size=200), st.integers(1, 30), st.integers(1, 5_000))
def test_split_covers_in_order_within_limits(sizes: list[int], max_items: int,
                                             max_bytes: int) -> None:
    chunks = split(sizes, max_items, max_bytes)
    # Consecutive, complete, non-empty.
    assert [i for a, b in chunks for i in range(a, b)] == list(range(len(sizes)))
    for a, b in chunks:
        assert 0 < b - a <= max_items
        # Over the byte limit only when a single row is heavier than it.
        assert sum(sizes[a:b]) <= max_bytes or b - a == 1


@given(limits, st.lists(st.tuples(st.lists(st.integers(0, 400), max_size=20),
                                  st.floats(0, 1)), max_size=20))
def test_add_many_is_add_for_each_row(lim: tuple[int, int, float],
                                      units: list[tuple[list[int], float]]) -> None:
    bulk, single = BatchTrigger(*lim), BatchTrigger(*lim)
    now = 0.0
    for sizes, step in units:
        now += step
        full = [single.add(size, now) for size in sizes]
        assert bulk.add_many(len(sizes), sum(sizes), now) == (full[-1] if full else single.full())
        assert (bulk.items, bulk.bytes, bulk.deadline()) == (
            single.items, single.bytes, single.deadline())
        assert bulk.due(now) == single.due(now)


@given(st.lists(st.integers(0, 9), min_size=1, max_size=80), st.integers(1, 12))
def test_whole_records_keep_each_records_rows_in_one_chunk(owners: list[int],
                                                           max_items: int) -> None:
    """Rows of one record may sit apart (two units of one run): however the
    chunks were cut, every record ends in exactly one chunk, and the chunks
    still cover every row once, in order."""
    chunks = whole_records(owners, split([1] * len(owners), max_items, 10**9))
    assert [i for a, b in chunks for i in range(a, b)] == list(range(len(owners)))
    where: dict[int, set[int]] = {}
    for n, (a, b) in enumerate(chunks):
        for i in range(a, b):
            where.setdefault(owners[i], set()).add(n)
    assert all(len(chunk) == 1 for chunk in where.values())


def test_whole_records_leaves_chunks_of_whole_records_alone() -> None:
    assert whole_records([1, 1, 2, 2, 3], [(0, 2), (2, 4), (4, 5)]) == [(0, 2), (2, 4), (4, 5)]
    assert whole_records([1, 2, 2, 3], [(0, 2), (2, 4)]) == [(0, 4)]
