"""One assigned partition for one assignment generation.

Its bound `done` method is the completion callback handed to the processor:
after a revocation the object is fenced (`revoked`), so work that finishes
late still releases its in-flight budget but never moves an offset that a
later owner — or a later assignment of ours — could commit.
"""

from __future__ import annotations

from collections.abc import Sequence

from consumer.engine.flow import FlowControl, Load
from consumer.engine.tracker import OffsetTracker
from consumer.types import TP, Record

#: Per-record bookkeeping on top of key and value: the object, headers, offsets.
#: (Sizes are -1 for a null key or value; the same formula is used when a
#: record is acquired and released, so the count never drifts.)
RECORD_OVERHEAD = 162


def _run_size(records: Sequence[Record]) -> int:
    """In-flight bytes of `records`: overhead plus key and value sizes."""
    size: int = RECORD_OVERHEAD * len(records) + sum(
        [r.serialized_value_size + r.serialized_key_size for r in records])
    return size


class PartitionState:
    __slots__ = ("_flow", "accepting", "committed", "completed", "load", "revoked", "revoking",
                 "tp", "tracker")

    def __init__(self, tp: TP, flow: FlowControl) -> None:
        self.tp = tp
        self._flow = flow
        self.load: Load = flow.assign(tp)
        self.tracker = OffsetTracker()
        self.committed: int | None = None  # last offset we committed for it
        self.completed = 0  # messages done, for the commit policy
        self.accepting = True  # the fetch loop may deliver its records
        self.revoking = False  # workers stop starting its records
        self.revoked = False  # fenced: completions no longer count

    def deliver(self, records: Sequence[Record]) -> None:
        self._flow.acquire(self.load, len(records), _run_size(records))
        self.tracker.deliver([r.offset for r in records])

    def done(self, record: Record) -> None:
        """The processor's completion callback: exactly once per record.

        The hot path of the service: `FlowControl.release` is inlined here.
        """
        size = RECORD_OVERHEAD + record.serialized_value_size + record.serialized_key_size
        load = self.load
        flow = self._flow
        load.messages -= 1
        load.bytes -= size
        flow.messages -= 1
        flow.bytes -= size
        if not self.revoked:
            self.tracker.done(record.offset)
            self.completed += 1

    def done_run(self, records: Sequence[Record]) -> None:
        """`done` for a run of this partition's records (ascending offsets), at
        once: one budget release and one tracker walk for the whole run."""
        if not records:
            return
        self._flow.release(self.load, len(records), _run_size(records))
        if not self.revoked:
            self.tracker.done_many([r.offset for r in records])
            self.completed += len(records)

    def drop(self, records: Sequence[Record]) -> None:
        """Records that will never be processed here (revoked, stopping): free
        their budget; their offsets stay uncommitted, so they are redelivered."""
        if records:
            self._flow.release(self.load, len(records), _run_size(records))

    @property
    def in_flight(self) -> int:
        return self.load.messages

    def pending_commit(self) -> int | None:
        """The offset to commit if it moved since the last commit."""
        offset = self.tracker.committable
        if self.revoked or offset is None or offset == self.committed:
            return None
        return offset
