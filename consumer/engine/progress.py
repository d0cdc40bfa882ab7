"""Progress: what of a partition is done, in the form stored with the rows.

Pure value, used on both sides of exactly-once delivery: the PostgreSQL sink
merges it inside each write transaction (`consumer_offsets`), and the engine
reads it back on assignment to seek and to skip what is already done.

`position` is the next offset below which every record is done (None: nothing
stored yet); `ranges` are the offsets at or above it that are done too, as
sorted, disjoint, non-adjacent half-open `[start, stop)` pairs. Key ordering
completes records out of order, so a crash may leave done work above an
unfinished offset: without the ranges it would be done again.

Merging is a union and never loses an offset: two transactions that merge
their own offsets in turn (under the row lock) end with both. Offsets are
integers here, not records: the position only moves up over ranges that
touch it (a gap in the offsets — compaction, transaction markers — is passed
by a tracker's committable offset, which knows which offsets were delivered).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

_Range = tuple[int, int]
_INF = math.inf


@dataclass(frozen=True, slots=True)
class Progress:
    position: int | None = None
    ranges: tuple[_Range, ...] = ()

    def __contains__(self, offset: object) -> bool:
        """Whether `offset` is done."""
        if not isinstance(offset, int):
            return False
        if self.position is not None and offset < self.position:
            return True
        # The last range starting at or before `offset` (key ordering behind a
        # stuck record can leave thousands: the sink asks once per row).
        i = bisect_right(self.ranges, (offset, _INF)) - 1
        return i >= 0 and offset < self.ranges[i][1]

    @property
    def end(self) -> int | None:
        """One past the highest done offset, or None if nothing is done."""
        if self.ranges:
            return self.ranges[-1][1]
        return self.position

    def merge(self, position: int | None, offsets: Iterable[int] = ()) -> Progress:
        """The union of this progress, everything below `position`, and `offsets`."""
        low = _max(self.position, position)
        spans = list(self.ranges)
        spans.extend((o, o + 1) for o in offsets)
        return _normal(low, spans)

    def union(self, other: Progress) -> Progress:
        return _normal(_max(self.position, other.position), [*self.ranges, *other.ranges])

    def to_array(self) -> list[int]:
        """`ranges` flattened, `[start, stop, start, stop, …]`, for a bigint[]."""
        return [bound for span in self.ranges for bound in span]

    @classmethod
    def from_array(cls, position: int | None, bounds: Sequence[int] | None) -> Progress:
        """The inverse of `to_array` (normalised, so a hand-edited row is safe);
        raises `ValueError` for an odd number of bounds."""
        bounds = list(bounds or ())
        if len(bounds) % 2:
            raise ValueError(f"done offsets: an odd number of range bounds ({len(bounds)})")
        return _normal(position, list(zip(bounds[::2], bounds[1::2], strict=True)))


def _max(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else max(a, b)


def _normal(position: int | None, spans: list[_Range]) -> Progress:
    """Sort and join `spans`, drop what lies below `position`, and move the
    position up over the ranges that start at it."""
    spans = sorted(s for s in spans if s[0] < s[1])
    joined: list[list[int]] = []
    for start, stop in spans:
        if joined and start <= joined[-1][1]:
            joined[-1][1] = max(joined[-1][1], stop)
        else:
            joined.append([start, stop])
    out: list[_Range] = []
    for start, stop in joined:
        if position is not None and stop <= position:
            continue
        if position is not None and start <= position:
            position = stop
            continue
        out.append((start, stop))
    assert all(a[1] < b[0] for a, b in pairwise(out))
    return Progress(position, tuple(out))
