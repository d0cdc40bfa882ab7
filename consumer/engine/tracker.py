"""Offset tracker: which offset of a partition may be committed.

Pure state machine, one per assigned partition (per assignment generation).
Offsets are *delivered* in increasing order (with gaps: compaction and
transaction markers leave holes) and *done* in any order. The committable
offset is the highest delivered offset below which every delivered offset is
done, plus one: committing it can never skip an unfinished message.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from operator import lt


class OffsetTracker:
    __slots__ = ("_committable", "_done", "_head", "_last_delivered", "_pending")

    def __init__(self) -> None:
        # Delivered and not yet committable, in delivery (= offset) order:
        # `_pending[_head:]`. A list read from a moving head rather than a
        # deque: a finished run leaves the front by moving the head, in O(1),
        # not by one `popleft` per offset; the list is cut now and then.
        self._pending: list[int] = []
        self._head = 0
        # Done but behind an unfinished offset; small unless a message is stuck.
        self._done: set[int] = set()
        self._committable: int | None = None
        self._last_delivered = -1

    def deliver(self, offsets: Iterable[int]) -> None:
        """Record offsets handed to processing. Raises `ValueError` if an offset
        does not increase: the engine never delivers one twice."""
        batch = offsets if type(offsets) is list else list(offsets)
        if not batch:
            return
        # Checked pairwise in C (map over two slices), then appended at once.
        if batch[0] <= self._last_delivered or not all(map(lt, batch, batch[1:])):
            last = self._last_delivered
            for offset in batch:
                if offset <= last:
                    raise ValueError(f"offset {offset} delivered after {last}")
                last = offset
        self._pending.extend(batch)
        self._last_delivered = batch[-1]

    def done(self, offset: int) -> None:
        """Mark a delivered offset done. Unknown or repeated offsets are ignored."""
        pending, head = self._pending, self._head
        if head == len(pending) or offset < pending[head]:
            return
        if offset != pending[head]:
            self._done.add(offset)
            return
        self._advance(head + 1, offset)

    def done_many(self, offsets: Sequence[int]) -> None:
        """Mark a run of delivered offsets done at once; `offsets` ascending.

        Same result as `done` for each, in any order. The common case — the
        run starts at the oldest pending offset and covers a contiguous stretch
        of the delivered ones — moves the head once, no set at all.
        """
        pending, head = self._pending, self._head
        finished = self._done
        count = len(offsets)
        if count and not finished and len(pending) - head >= count \
                and pending[head] == offsets[0] and offsets[-1] - offsets[0] == count - 1 \
                and pending[head + count - 1] == offsets[-1]:
            # The run is exactly the oldest `count` pending offsets (contiguous,
            # nothing done out of order): the partition-mode common case.
            self._advance(head + count, offsets[-1])
            return
        i = 0
        last = None
        end = len(pending)
        while i < count and head < end:
            first = pending[head]
            offset = offsets[i]
            if offset == first:
                last = first
                head += 1
                i += 1
            elif first in finished:
                finished.discard(first)
                last = first
                head += 1
            elif offset < first:
                i += 1  # unknown, repeated or already committable: ignored
            else:
                break
        if i < count and head < end:  # the rest lie beyond the oldest pending offset
            finished.update(offsets[i:])
        if last is not None:
            self._advance(head, last)

    def _advance(self, head: int, last: int) -> None:
        """Everything before `head` is done, `last` the newest of it; the
        offsets done out of order that now follow on leave too."""
        pending, finished = self._pending, self._done
        end = len(pending)
        while finished and head < end and pending[head] in finished:
            last = pending[head]
            finished.discard(last)
            head += 1
        self._committable = last + 1
        if head == end:
            pending.clear()
            head = 0
        elif head >= 4096 and head * 2 >= end:
            del pending[:head]  # one memmove, amortised over the offsets passed
            head = 0
        self._head = head

    def skip_to(self, position: int) -> None:
        """The consumer has read up to `position` (its next offset to fetch)
        and nothing is pending: the offsets after the last delivered one held
        nothing for us (transaction markers, records of aborted transactions),
        so the committable offset moves up to `position` — otherwise a
        partition ending in a marker would never commit to its end. Ignored
        while anything is pending, or when `position` is not ahead."""
        if self._head != len(self._pending) or position <= self._last_delivered + 1:
            return
        if self._committable is not None and position <= self._committable:
            return
        self._committable = position
        self._last_delivered = position - 1

    @property
    def committable(self) -> int | None:
        """The offset to commit (next to consume), or None if nothing is done yet."""
        return self._committable

    def done_above(self) -> list[int]:
        """The offsets done but not yet committable (behind an unfinished
        one), ascending: what exactly-once delivery stores beside the
        committable offset, so a restart does not do them again."""
        return sorted(self._done)

    @property
    def oldest_pending(self) -> int | None:
        """The lowest delivered offset not yet done, or None if all are done."""
        return self._pending[self._head] if self._head < len(self._pending) else None

    @property
    def outstanding(self) -> int:
        """Delivered offsets not yet behind the committable point."""
        return len(self._pending) - self._head
