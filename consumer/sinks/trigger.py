"""When to flush a batch: a pure state machine (no clock, no I/O).

The batcher feeds it row sizes and the current time; it answers whether the
batch is due and when it will be due at the latest. Property-tested.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field


@dataclass(slots=True)
class BatchTrigger:
    """Flush when `max_items` rows or `max_bytes` bytes are pending, or when the
    oldest pending row has waited `max_latency` seconds.

    Contract: `due(now)` is True iff something is pending and one of the three
    limits is reached; `deadline()` is the latest time at which `due` becomes
    True without further rows (None when empty).
    """

    max_items: int
    max_bytes: int
    max_latency: float
    items: int = field(default=0, init=False)
    bytes: int = field(default=0, init=False)
    first_at: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.max_items < 1 or self.max_bytes < 1 or self.max_latency <= 0:
            raise ValueError("batch limits must be positive")

    def add(self, size: int, now: float) -> bool:
        """Count one pending row of `size` bytes; return whether the batch is
        full (items or bytes) — the latency limit is `due`'s business."""
        if self.first_at is None:
            self.first_at = now
        self.items += 1
        self.bytes += size
        return self.full()

    def add_many(self, count: int, size: int, now: float) -> bool:
        """`add` for `count` rows weighing `size` bytes together, at once."""
        if count <= 0:
            return self.full()
        if self.first_at is None:
            self.first_at = now
        self.items += count
        self.bytes += size
        return self.full()

    def full(self) -> bool:
        return self.items >= self.max_items or self.bytes >= self.max_bytes

    def due(self, now: float) -> bool:
        if self.items == 0:
            return False
        assert self.first_at is not None
        # Compared against the deadline itself so `due(deadline())` holds exactly.
        return self.full() or now >= self.first_at + self.max_latency

    def deadline(self) -> float | None:
        if self.first_at is None:
            return None
        return self.first_at + self.max_latency

    def reset(self) -> None:
        """Everything pending was taken for writing."""
        self.items = 0
        self.bytes = 0
        self.first_at = None


def split(sizes: list[int], max_items: int, max_bytes: int) -> list[tuple[int, int]]:
    """Cut a run of rows into consecutive chunks (start, stop) that respect
    `max_items` and `max_bytes`; a single row heavier than `max_bytes` is a
    chunk of its own (it must still be written)."""
    chunks: list[tuple[int, int]] = []
    start = 0
    weight = 0
    for i, size in enumerate(sizes):
        count = i - start
        if count and (count >= max_items or weight + size > max_bytes):
            chunks.append((start, i))
            start, weight = i, 0
        weight += size
    if start < len(sizes):
        chunks.append((start, len(sizes)))
    return chunks


def whole_records(keys: Sequence[Hashable], chunks: list[tuple[int, int]],
                  ) -> list[tuple[int, int]]:
    """Join consecutive `chunks` so that every record's rows (equal `keys`:
    topic, partition, offset) fall in one chunk. Exactly-once delivery stores
    a record as done with the batch that writes its rows: split over two
    batches, a crash between them would lose the second part."""
    last: dict[Hashable, int] = {}
    for i, key in enumerate(keys):
        last[key] = i
    out: list[tuple[int, int]] = []
    reach = 0  # the chunk under way must extend past this index
    for start, stop in chunks:
        first = start
        if out and start < reach:
            first = out.pop()[0]  # a record of the previous chunk continues here
        reach = max(reach, max(last[keys[i]] for i in range(start, stop)) + 1)
        out.append((first, stop))
    return out
