"""Fencing: completions that arrive after a revocation release their budget
but never move an offset."""

from __future__ import annotations

import gc
import weakref

from hypothesis import given
from hypothesis import strategies as st

from consumer.engine.flow import FlowControl
from consumer.engine.partition import PartitionState, Phase
from consumer.observability.age import AgeBuckets
from consumer.types import TP, Record
from tests.support.records import consumer_record


def test_late_completion_after_revocation_is_fenced() -> None:
    flow = FlowControl(100, 10**6)
    old = PartitionState(TP("t", 0), flow)
    records = [consumer_record(i) for i in range(3)]
    old.deliver(records)
    old.done_run((records[0],))
    assert old.pending_commit() == 1
    old.fence()  # revoked with offsets 1 and 2 still running
    flow.revoke(old.tp)
    new = PartitionState(TP("t", 0), flow)  # assigned to us again
    new.deliver([consumer_record(1), consumer_record(2)])
    old.done_run((records[1],))  # the old generation's work finishes late
    old.done_run((records[2],))
    assert old.pending_commit() is None
    assert new.tracker.committable is None  # the redelivered copies are not done
    assert old.in_flight == 0
    assert flow.messages == 2  # only the new generation's records remain


def test_null_keys_and_values_are_accounted_symmetrically() -> None:
    flow = FlowControl(100, 10**6)
    state = PartitionState(TP("t", 0), flow)
    records = [consumer_record(0, key=None), consumer_record(1, value=None),
               consumer_record(2, key=None, value=None)]
    state.deliver(records)
    assert flow.bytes > 0
    for record in records:
        state.done_run((record,))
    assert (flow.messages, flow.bytes) == (0, 0)
    assert state.pending_commit() == 3


def test_an_unfinished_record_keeps_no_records_alive_and_time_lag_stays_right() -> None:
    flow = FlowControl(10**6, 10**9)
    state = PartitionState(TP("t", 0), flow)
    refs: list[weakref.ref[Record]] = []

    def deliver_batch(start: int) -> None:
        batch = [consumer_record(start + i, timestamp=1_000 + start + i) for i in range(10)]
        refs.extend(weakref.ref(r) for r in batch)
        state.deliver(batch)
        for record in batch:
            if record.offset != 0:  # offset 0 never finishes (a hung handler)
                state.done_run((record,))

    for n in range(200):
        deliver_batch(n * 10)
    gc.collect()
    assert [r for r in refs if r() is not None] == []
    assert state.oldest_undone_timestamp() == 1.0  # offset 0's broker timestamp
    assert state.in_flight == 1
    state.done_run((consumer_record(0, timestamp=1_000),))  # it finishes at last
    assert state.oldest_undone_timestamp() is None
    assert state.pending_commit() == 2000


def test_records_without_a_usable_timestamp_complete_and_have_no_time() -> None:
    flow = FlowControl(100, 10**6)
    ages = AgeBuckets((1.0, 10.0))
    state = PartitionState(TP("t", 0), flow, ages)
    records = [consumer_record(0, timestamp=None), consumer_record(1, timestamp=-1),
               consumer_record(2, timestamp=0)]
    state.deliver(records)
    assert state.oldest_undone_timestamp() is None  # offset 0 has no timestamp
    state.done_run((records[0],))
    assert state.oldest_undone_timestamp() is None  # nor has offset 1
    for record in records[1:]:
        state.done_run((record,))
    assert (flow.messages, flow.bytes) == (0, 0)
    assert state.pending_commit() == 3
    assert sum(ages.counts) == 0  # no age was made up for them


def test_a_run_without_usable_timestamps_completes_and_has_no_time() -> None:
    flow = FlowControl(100, 10**6)
    ages = AgeBuckets((1.0, 10.0))
    state = PartitionState(TP("t", 0), flow, ages)
    records = [consumer_record(0, timestamp=None), consumer_record(1, timestamp=-1),
               consumer_record(2, timestamp=0), consumer_record(3, timestamp=1)]
    state.deliver(records)
    state.done_run(records)
    assert (flow.messages, flow.bytes) == (0, 0)
    assert state.pending_commit() == 4
    assert sum(ages.counts) == 1  # only offset 3 has a broker timestamp


@given(st.lists(st.sampled_from(["revoke", "abandon", "fence"]), max_size=6))
def test_the_lifecycle_only_moves_forward(steps: list[str]) -> None:
    state = PartitionState(TP("t", 0), FlowControl(10, 10_000))
    assert (state.accepting, state.revoking, state.revoked) == (True, False, False)
    seen = [state.phase]
    for step in steps:
        getattr(state, step)()
        seen.append(state.phase)
    assert seen == sorted(seen)  # never back
    if "fence" in steps:
        assert state.revoked
        assert state.revoking
        assert not state.accepting
    elif "abandon" in steps:
        assert state.revoking
        assert not state.revoked
        assert not state.accepting
    elif "revoke" in steps:
        assert not state.accepting
        assert not state.revoking


def test_a_written_off_state_frees_its_budget_once() -> None:
    """Exactly-once: a revoked partition's fenced rows never complete; writing
    the state off frees their budget, and a late completion does not free it
    a second time."""
    flow = FlowControl(100, 10**6)
    old = PartitionState(TP("t", 0), flow)
    other = PartitionState(TP("t", 1), flow)
    records = [consumer_record(i) for i in range(4)]
    old.deliver(records)
    other.deliver([consumer_record(0, partition=1)])
    old.done_run(records[:1])
    old.fence()
    old.write_off()
    assert (flow.messages, flow.bytes) == (other.load.messages, other.load.bytes)
    old.done_run((records[1],))  # a handler still running when the partition was lost
    old.done_run(records[2:])
    assert (flow.messages, flow.bytes) == (other.load.messages, other.load.bytes)
    assert old.pending_commit() is None


def test_a_claim_moves_only_a_claiming_partition_forward() -> None:
    """Exactly-once: a partition starts by claiming (its records dropped,
    not accepted); the claim makes it active — but a claim answered after
    the partition was revoked does not bring it back."""
    flow = FlowControl(100, 10**6)
    state = PartitionState(TP("t", 0), flow, claiming=True)
    assert state.claiming
    assert not state.accepting
    state.claimed(3, None)
    assert state.accepting
    assert not state.claiming
    assert state.epoch == 3
    late = PartitionState(TP("t", 1), flow, claiming=True)
    late.revoke()
    late.claimed(4, None)
    assert late.phase is Phase.DRAINING
    assert not late.accepting
