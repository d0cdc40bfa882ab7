"""The offset tracker against a reference model: committable is the highest
delivered offset below which every delivered offset is done, plus one."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.engine.tracker import OffsetTracker


def reference(delivered: list[int], done: set[int]) -> int | None:
    committable = None
    for offset in delivered:
        if offset not in done:
            break
        committable = offset + 1
    return committable


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[list[int]], list[int]]:
    """Delivery batches of increasing offsets with random gaps, and a random
    completion order over a random subset of them."""
    gaps = draw(st.lists(st.integers(1, 4), min_size=1, max_size=120))
    offsets, current = [], draw(st.integers(0, 1_000))
    for gap in gaps:
        current += gap
        offsets.append(current)
    cuts = sorted(draw(st.sets(st.integers(1, len(offsets)), max_size=6)))
    batches, start = [], 0
    for cut in [*cuts, len(offsets)]:
        if cut > start:
            batches.append(offsets[start:cut])
            start = cut
    completed = draw(st.permutations(offsets))
    completed = completed[: draw(st.integers(0, len(completed)))]
    return batches, completed


def played(batches: list[list[int]], completed: list[int]) -> OffsetTracker:
    """A tracker that was delivered every batch, then told `completed` done."""
    tracker = OffsetTracker()
    for batch in batches:
        tracker.deliver(batch)
    for offset in completed:
        tracker.done(offset)
    return tracker


@given(scenarios())
def test_matches_reference_under_any_interleaving(
    scenario: tuple[list[list[int]], list[int]],
) -> None:
    batches, completed = scenario
    tracker = OffsetTracker()
    delivered: list[int] = []
    done: set[int] = set()
    pending_done = list(completed)
    for batch in batches:
        tracker.deliver(batch)
        delivered.extend(batch)
        # Complete, in the drawn order, whatever has been delivered so far.
        still = []
        for offset in pending_done:
            if offset in delivered:
                tracker.done(offset)
                done.add(offset)
                assert tracker.committable == reference(delivered, done)
            else:
                still.append(offset)
        pending_done = still
    assert tracker.committable == reference(delivered, done)
    # Never past an unfinished message.
    if tracker.committable is not None:
        assert all(o in done for o in delivered if o < tracker.committable)
    assert tracker.outstanding == len(delivered) - len(
        [o for o in delivered if tracker.committable is not None and o < tracker.committable])


@given(scenarios())
def test_repeated_and_unknown_completions_change_nothing(
    scenario: tuple[list[list[int]], list[int]],
) -> None:
    batches, completed = scenario
    tracker = played(batches, completed)
    before = tracker.committable
    for offset in completed:
        tracker.done(offset)  # twice
    tracker.done(-5)  # never delivered
    assert tracker.committable == before


def test_gaps_are_skipped_not_waited_for() -> None:
    tracker = OffsetTracker()
    tracker.deliver([10, 11, 15, 20])  # 12-14 and 16-19 compacted away
    tracker.done(11)
    assert tracker.committable is None
    tracker.done(10)
    assert tracker.committable == 12
    tracker.done(20)
    assert tracker.committable == 12
    tracker.done(15)
    assert tracker.committable == 21


def test_delivering_an_offset_twice_is_a_bug() -> None:
    tracker = OffsetTracker()
    tracker.deliver([1, 2])
    with pytest.raises(ValueError, match="delivered after"):
        tracker.deliver([2])


@given(scenarios(), st.data())
def test_done_many_matches_done_one_by_one(
    scenario: tuple[list[list[int]], list[int]], data: st.DataObject,
) -> None:
    """Runs (ascending slices of a completion order, plus strays: repeated,
    undelivered or already committable offsets) give the same committable
    offset and outstanding count as marking each offset alone."""
    batches, completed = scenario
    bulk, single = OffsetTracker(), OffsetTracker()
    for batch in batches:
        bulk.deliver(batch)
        single.deliver(batch)
    remaining = list(completed)
    while remaining:
        size = data.draw(st.integers(1, len(remaining)))
        run, remaining = remaining[:size], remaining[size:]
        strays = data.draw(st.lists(st.integers(0, 2_000), max_size=3))
        run = sorted(set(run + strays))
        bulk.done_many(run)
        for offset in run:
            single.done(offset)
        assert bulk.committable == single.committable
        assert bulk.outstanding == single.outstanding


@pytest.mark.parametrize("seed", range(5))
def test_long_streams_stay_right_across_the_cuts_of_the_pending_list(seed: int) -> None:
    """Tens of thousands of offsets — far past the point where the tracker
    cuts its pending list — done mostly in runs from the front, sometimes a
    later stretch first: committable, the oldest pending offset and the
    outstanding count always agree with the reference."""
    rng = random.Random(seed)
    tracker = OffsetTracker()
    delivered: list[int] = []
    done: set[int] = set()
    offset = 0
    for _ in range(40):
        batch = []
        for _ in range(rng.randint(500, 1_500)):
            offset += rng.choice((1, 1, 1, 2))
            batch.append(offset)
        tracker.deliver(batch)
        delivered.extend(batch)
        undone = [o for o in delivered if o not in done]
        while len(undone) > rng.randint(0, 800):
            start = 0 if rng.random() < 0.7 else rng.randrange(len(undone))
            run = undone[start:start + rng.randint(1, 600)]
            if rng.random() < 0.5:
                tracker.done_many(run)
            else:
                for o in reversed(run):
                    tracker.done(o)
            done.update(run)
            undone = [o for o in undone if o not in done]
            assert tracker.committable == reference(delivered, done)
            assert tracker.oldest_pending == (undone[0] if undone else None)
            assert tracker.outstanding == len(delivered) - len(
                [o for o in delivered if o < (tracker.committable or 0)])


@given(scenarios(), st.integers(0, 10))
def test_skip_to_moves_only_an_idle_tracker_and_only_forward(
        scenario: tuple[list[list[int]], list[int]], ahead: int) -> None:
    batches, completed = scenario
    tracker = played(batches, completed)
    delivered = [o for b in batches for o in b]
    before = tracker.committable
    position = delivered[-1] + 1 + ahead
    tracker.skip_to(position)
    if set(completed) == set(delivered):
        assert tracker.committable == position  # past markers after the last record
        tracker.deliver([position + 1])  # delivery goes on after the skipped stretch
        assert tracker.oldest_pending == position + 1
    else:
        assert tracker.committable == before  # never past an unfinished offset
    tracker.skip_to(0)
    assert tracker.committable == (position if set(completed) == set(delivered) else before)


def test_skip_to_on_a_tracker_that_got_nothing_yet() -> None:
    tracker = OffsetTracker()
    tracker.skip_to(7)  # only markers or aborted records so far
    assert tracker.committable == 7
    tracker.deliver([9])
    tracker.done(9)
    assert tracker.committable == 10
