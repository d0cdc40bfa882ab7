"""Fencing: completions that arrive after a revocation release their budget
but never move an offset."""

from __future__ import annotations

from aiokafka.structs import ConsumerRecord

from consumer.engine.flow import FlowControl
from consumer.engine.partition import PartitionState
from consumer.types import TP, Record


def rec(offset: int, key: bytes | None = b"k", value: bytes | None = b"value") -> Record:
    return ConsumerRecord("t", 0, offset, 0, 0, key, value, None,
                          len(key) if key is not None else -1,
                          len(value) if value is not None else -1, [])


def test_late_completion_after_revocation_is_fenced() -> None:
    flow = FlowControl(100, 10**6)
    old = PartitionState(TP("t", 0), flow)
    records = [rec(i) for i in range(3)]
    old.deliver(records)
    old.done(records[0])
    assert old.pending_commit() == 1
    old.revoked = True  # revoked with offsets 1 and 2 still running
    flow.revoke(old.tp)
    new = PartitionState(TP("t", 0), flow)  # assigned to us again
    new.deliver([rec(1), rec(2)])
    old.done(records[1])  # the old generation's work finishes late
    old.done(records[2])
    assert old.pending_commit() is None
    assert new.tracker.committable is None  # the redelivered copies are not done
    assert old.in_flight == 0
    assert flow.messages == 2  # only the new generation's records remain


def test_null_keys_and_values_are_accounted_symmetrically() -> None:
    flow = FlowControl(100, 10**6)
    state = PartitionState(TP("t", 0), flow)
    records = [rec(0, key=None), rec(1, value=None), rec(2, key=None, value=None)]
    state.deliver(records)
    assert flow.bytes > 0
    for record in records:
        state.done(record)
    assert (flow.messages, flow.bytes) == (0, 0)
    assert state.pending_commit() == 3
