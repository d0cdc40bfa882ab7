"""One assigned partition for one assignment generation.

Its bound `done` method is the completion callback handed to the processor:
after a revocation the object is fenced (`revoked`), so work that finishes
late still releases its in-flight budget but never moves an offset that a
later owner — or a later assignment of ours — could commit.

Its lifecycle is one `Phase`, moved only forward by the engine:

    ACTIVE ──revoke──▶ DRAINING ──abandon──▶ ABANDONING ──fence──▶ FENCED
       └──────────────────┴──────────fence (lost: evicted)──────────┘
"""

from __future__ import annotations

import time
from array import array
from bisect import bisect_left
from collections import deque
from collections.abc import Sequence
from enum import IntEnum

from consumer.engine.flow import FlowControl, Load
from consumer.engine.progress import Progress
from consumer.engine.tracker import OffsetTracker
from consumer.observability.age import AgeBuckets
from consumer.types import TP, Record

#: Per-record bookkeeping on top of key and value: the object, headers, offsets.
#: (Sizes are -1 for a null key or value; the same formula is used when a
#: record is acquired and released, so the count never drifts.)
RECORD_OVERHEAD = 162
_now = time.time


def _scan(records: Sequence[Record]) -> tuple[list[int], list[int], int]:
    """One pass over a run (each record's fields are read while it is in the
    CPU cache, which is most of the cost): its offsets, its broker timestamps
    in ms (0 where there is none), and its in-flight bytes — overhead plus
    key and value sizes."""
    offsets: list[int] = []
    stamps: list[int] = []
    add_offset, add_stamp = offsets.append, stamps.append
    size = RECORD_OVERHEAD * len(records)
    for record in records:
        add_offset(record.offset)
        add_stamp(record.timestamp or 0)
        size += record.serialized_value_size + record.serialized_key_size
    return offsets, stamps, size


class Phase(IntEnum):
    """Where a partition is in its assignment; each phase includes the
    restrictions of the ones before it."""

    #: Exactly-once delivery: its epoch is being claimed in the database;
    #: what is fetched meanwhile is dropped (fetched again from where it resumes).
    CLAIMING = -1
    ACTIVE = 0  # the fetch loop delivers its records, workers process them
    DRAINING = 1  # revoked: nothing new is delivered; what was fetched finishes
    ABANDONING = 2  # past the drain deadline: workers stop starting its records
    FENCED = 3  # no longer ours: completions release budget but move no offset


class PartitionState:
    __slots__ = ("_ages", "_batches", "_flow", "committed", "completed", "epoch", "load",
                 "phase", "skip", "tp", "tracker", "unfetched")

    def __init__(self, tp: TP, flow: FlowControl, ages: AgeBuckets | None = None, *,
                 claiming: bool = False) -> None:
        self.tp = tp
        self._flow = flow
        self._ages = ages if ages is not None else AgeBuckets(())
        #: (offsets, timestamps in ms) of delivered batches that may still hold
        #: an undone record, for time lag: compact arrays, never the records, so
        #: one record that never finishes keeps 16 bytes per later record alive,
        #: not the records themselves.
        self._batches: deque[tuple[array[int], array[int]]] = deque()
        self.load: Load = flow.assign(tp)
        self.tracker = OffsetTracker()
        self.committed: int | None = None  # last offset we committed for it
        self.completed = 0  # messages done, for the commit policy
        self.phase = Phase.CLAIMING if claiming else Phase.ACTIVE
        #: Exactly-once delivery only: the fencing epoch claimed for this
        #: assignment (None: not claimed, so no write may carry its rows),
        #: and what the database says is done above where we resumed.
        self.epoch: int | None = None
        self.skip: Progress | None = None
        #: While claiming, the first offset fetched and dropped: where to
        #: seek back to if nothing else says.
        self.unfetched: int | None = None

    # -- lifecycle: forward only -------------------------------------------

    def claimed(self, epoch: int, skip: Progress | None) -> None:
        """Exactly-once: the claim succeeded; its records are handled from
        now on (those `skip` marks done are completed without handling)."""
        self.epoch, self.skip, self.unfetched = epoch, skip, None
        if self.phase is Phase.CLAIMING:
            self.phase = Phase.ACTIVE

    @property
    def claiming(self) -> bool:
        return self.phase is Phase.CLAIMING

    def revoke(self) -> None:
        """Stop taking its records; what was fetched may still finish."""
        self.phase = max(self.phase, Phase.DRAINING)

    def abandon(self) -> None:
        """Past the drain deadline: start none of its records any more."""
        self.phase = max(self.phase, Phase.ABANDONING)

    def fence(self) -> None:
        """No longer ours: nothing it completes moves an offset."""
        self.phase = Phase.FENCED

    @property
    def accepting(self) -> bool:
        return self.phase is Phase.ACTIVE

    @property
    def revoking(self) -> bool:
        return self.phase >= Phase.ABANDONING

    @property
    def revoked(self) -> bool:
        return self.phase is Phase.FENCED

    def deliver(self, records: Sequence[Record]) -> None:
        offsets, stamps, size = _scan(records)
        self._flow.acquire(self.load, len(records), size)
        self.tracker.deliver(offsets)
        self._batches.append((array("q", offsets), array("q", stamps)))
        self._forget_done_batches()

    def split_done(self, records: Sequence[Record]) -> tuple[list[Record], Sequence[Record]]:
        """Exactly-once resume: (records the stored progress marks done,
        the others), each in offset order. Once the records pass the end of
        what is stored, the stored progress is forgotten."""
        skip = self.skip
        if skip is None or not records:
            return [], records
        end = skip.end
        if end is None or records[0].offset >= end:
            self.skip = None
            return [], records
        done = [r for r in records if r.offset in skip]
        if not done:
            return done, records
        return done, [r for r in records if r.offset not in skip]

    def done_run(self, records: Sequence[Record]) -> None:
        """The processor's completion callback, exactly once per record: a
        run of this partition's records (ascending offsets) at once — one
        budget release, one tracker walk, one pass over the run's timestamps
        for the record ages. The hot path of the service."""
        if not records:
            return
        offsets, stamps, size = _scan(records)
        self._flow.release(self.load, len(records), size)
        self._ages.observe_stamps(stamps, _now())
        if not self.revoked:
            self.tracker.done_many(offsets)
            self.completed += len(records)

    def write_off(self) -> None:
        """Exactly-once, once revoked: release the budget of every record
        still in flight. Their rows are refused by the sink (`Fenced`), so
        they never complete, and their budget would be held for good; the
        few that still complete (a handler still running, a dead-letter
        send) release into a detached account instead of twice."""
        load = self.load
        self._flow.release(load, load.messages, load.bytes)
        self._flow = FlowControl(1, 1, 0.5)  # nobody's: absorbs late completions
        self.load = self._flow.assign(self.tp)

    def drop(self, records: Sequence[Record]) -> None:
        """Records that will never be processed here (revoked, stopping): free
        their budget; their offsets stay uncommitted, so they are redelivered."""
        if records:
            self._flow.release(self.load, len(records), _scan(records)[2])

    def oldest_undone_timestamp(self) -> float | None:
        """Broker timestamp (seconds) of the oldest delivered record not yet
        done, or None (also when that record has no usable timestamp). Called
        by the metrics routine, not per message."""
        offset = self._forget_done_batches()
        if offset is None or not self._batches:
            return None
        offsets, stamps = self._batches[0]
        i = bisect_left(offsets, offset)
        if i == len(offsets) or offsets[i] != offset or stamps[i] <= 0:
            return None
        return stamps[i] / 1000

    def _forget_done_batches(self) -> int | None:
        """Drop the delivered batches that are entirely done; returns the
        oldest undone offset."""
        offset = self.tracker.oldest_pending
        batches = self._batches
        while batches and (offset is None or not batches[0][0] or batches[0][0][-1] < offset):
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
