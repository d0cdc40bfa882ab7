"""Progress, the done-set stored with the rows, against a reference model: a
plain set of offsets plus "everything below the position"."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.engine.progress import Progress

OFFSETS = st.lists(st.integers(0, 200), max_size=60)
POSITION = st.one_of(st.none(), st.integers(0, 200))
UNIVERSE = range(0, 260)


def done(progress: Progress) -> set[int]:
    return {o for o in UNIVERSE if o in progress}


def model(position: int | None, offsets: list[int]) -> set[int]:
    below = set(range(position)) if position is not None else set()
    return below | set(offsets)


def normal(progress: Progress) -> bool:
    spans = progress.ranges
    return (all(a < b for a, b in spans)
            and all(x[1] < y[0] for x, y in pairwise(spans))  # sorted, disjoint, not touching
            and (progress.position is None or all(a > progress.position for a, _ in spans)))


@given(st.lists(st.tuples(POSITION, OFFSETS), max_size=8))
def test_merging_is_the_union_of_everything_merged(steps: list[tuple[int | None,
                                                                      list[int]]]) -> None:
    progress = Progress()
    expected: set[int] = set()
    for position, offsets in steps:
        progress = progress.merge(position, offsets)
        expected |= model(position, offsets)
        assert done(progress) == expected
        assert normal(progress)


@given(POSITION, OFFSETS, POSITION, OFFSETS)
def test_two_writers_merging_in_either_order_lose_nothing(p1: int | None, o1: list[int],
                                                          p2: int | None,
                                                          o2: list[int]) -> None:
    """What two concurrent transactions do under the row lock: each merges
    its own part into what it finds."""
    first = Progress().merge(p1, o1).merge(p2, o2)
    second = Progress().merge(p2, o2).merge(p1, o1)
    assert first == second
    assert done(first) == model(p1, o1) | model(p2, o2)


@given(POSITION, OFFSETS, POSITION, OFFSETS)
def test_union_is_merge(p1: int | None, o1: list[int], p2: int | None, o2: list[int]) -> None:
    a, b = Progress().merge(p1, o1), Progress().merge(p2, o2)
    assert a.union(b) == a.merge(p2, o2)


@given(POSITION, OFFSETS)
def test_the_array_form_round_trips(position: int | None, offsets: list[int]) -> None:
    progress = Progress().merge(position, offsets)
    assert Progress.from_array(progress.position, progress.to_array()) == progress


def test_the_position_moves_over_ranges_that_touch_it_only() -> None:
    progress = Progress(10).merge(None, [11, 12, 14])
    assert progress == Progress(10, ((11, 13), (14, 15)))  # 10 itself is not done
    assert progress.merge(None, [10]) == Progress(13, ((14, 15),))
    assert progress.end == 15
    assert Progress().end is None


def test_a_broken_array_is_refused() -> None:
    with pytest.raises(ValueError, match="odd"):
        Progress.from_array(3, [5, 6, 7])


@given(POSITION, OFFSETS)
def test_membership_matches_the_model_everywhere(position: int | None,
                                                 offsets: list[int]) -> None:
    progress = Progress().merge(position, offsets)
    expected = model(position, offsets)
    assert all((o in progress) == (o in expected) for o in range(262))
