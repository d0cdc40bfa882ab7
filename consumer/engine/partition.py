"""One assigned partition for one assignment generation.

Its bound `done` method is the completion callback handed to the processor:
after a revocation the object is fenced (`revoked`), so work that finishes
late still releases its in-flight budget but never moves an offset that a
later owner — or a later assignment of ours — could commit.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import deque
from collections.abc import Sequence

from consumer.engine.flow import FlowControl, Load
from consumer.engine.tracker import OffsetTracker
from consumer.observability.age import AgeBuckets
from consumer.types import TP, Record

#: Per-record bookkeeping on top of key and value: the object, headers, offsets.
#: (Sizes are -1 for a null key or value; the same formula is used when a
#: record is acquired and released, so the count never drifts.)
RECORD_OVERHEAD = 162
_now = time.time
_bisect = bisect_left


def record_size(record: Record) -> int:
    size: int = RECORD_OVERHEAD + record.serialized_value_size + record.serialized_key_size
    return size


class PartitionState:
    __slots__ = ("_ages", "_batches", "_flow", "accepting", "committed", "completed", "load",
                 "revoked", "revoking", "tp", "tracker")

    def __init__(self, tp: TP, flow: FlowControl, ages: AgeBuckets | None = None) -> None:
        self.tp = tp
        self._flow = flow
        self._ages = ages if ages is not None else AgeBuckets(())
        #: Delivered batches that may still hold an undone record (for time lag).
        self._batches: deque[Sequence[Record]] = deque()
        self.load: Load = flow.assign(tp)
        self.tracker = OffsetTracker()
        self.committed: int | None = None  # last offset we committed for it
        self.completed = 0  # messages done, for the commit policy
        self.accepting = True  # the fetch loop may deliver its records
        self.revoking = False  # workers stop starting its records
        self.revoked = False  # fenced: completions no longer count

    def deliver(self, records: Sequence[Record]) -> None:
        self._flow.acquire(self.load, len(records), sum(map(record_size, records)))
        self.tracker.deliver(r.offset for r in records)
        self._batches.append(records)
        self._forget_done_batches()

    def done(self, record: Record) -> None:
        """The processor's completion callback: exactly once per record.

        The hot path of the service: `FlowControl.release` and the record-age
        observation are inlined here.
        """
        size = RECORD_OVERHEAD + record.serialized_value_size + record.serialized_key_size
        load = self.load
        flow = self._flow
        load.messages -= 1
        load.bytes -= size
        flow.messages -= 1
        flow.bytes -= size
        # consumer_record_age_seconds: AgeBuckets.observe, inlined.
        age = _now() - record.timestamp * 0.001
        ages = self._ages
        ages.counts[_bisect(ages.bounds, age)] += 1
        ages.total += age
        if not self.revoked:
            self.tracker.done(record.offset)
            self.completed += 1

    def drop(self, records: Sequence[Record]) -> None:
        """Records that will never be processed here (revoked, stopping): free
        their budget; their offsets stay uncommitted, so they are redelivered."""
        if records:
            self._flow.release(self.load, len(records), sum(map(record_size, records)))

    def oldest_undone_timestamp(self) -> float | None:
        """Broker timestamp (seconds) of the oldest delivered record not yet
        done, or None. Called by the metrics routine, not per message."""
        offset = self._forget_done_batches()
        if offset is None:
            return None
        batch = self._batches[0]
        i = bisect_left(batch, offset, key=lambda r: r.offset)
        if i == len(batch) or batch[i].offset != offset:
            return None
        stamp: int = batch[i].timestamp
        return stamp / 1000

    def _forget_done_batches(self) -> int | None:
        """Drop delivered batches that are entirely done (they would keep their
        records alive); returns the oldest undone offset."""
        offset = self.tracker.oldest_pending
        batches = self._batches
        while batches and (offset is None or not batches[0] or batches[0][-1].offset < offset):
            batches.popleft()
        return offset

    @property
    def in_flight(self) -> int:
        return self.load.messages

    def pending_commit(self) -> int | None:
        """The offset to commit if it moved since the last commit."""
        offset = self.tracker.committable
        if self.revoked or offset is None or offset == self.committed:
            return None
        return offset
