"""Offset tracker: which offset of a partition may be committed.

Pure state machine, one per assigned partition (per assignment generation).
Offsets are *delivered* in increasing order (with gaps: compaction and
transaction markers leave holes) and *done* in any order. The committable
offset is the highest delivered offset below which every delivered offset is
done, plus one: committing it can never skip an unfinished message.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from operator import lt


class OffsetTracker:
    __slots__ = ("_committable", "_done", "_last_delivered", "_pending")

    def __init__(self) -> None:
        # Delivered and not yet committable, in delivery (= offset) order.
        self._pending: deque[int] = deque()
        # Done but behind an unfinished offset; small unless a message is stuck.
        self._done: set[int] = set()
        self._committable: int | None = None
        self._last_delivered = -1

    def deliver(self, offsets: Iterable[int]) -> None:
        """Record offsets handed to processing. Raises `ValueError` if an offset
        does not increase: the engine never delivers one twice."""
        batch = list(offsets)
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
        pending = self._pending
        if not pending or offset < pending[0]:
            return
        if offset != pending[0]:
            self._done.add(offset)
            return
        pending.popleft()
        last = offset
        finished = self._done
        while finished and pending and pending[0] in finished:
            last = pending.popleft()
            finished.discard(last)
        self._committable = last + 1

    def done_many(self, offsets: Sequence[int]) -> None:
        """Mark a run of delivered offsets done at once; `offsets` ascending.

        Same result as `done` for each, in any order. The common case — the
        run starts at the oldest pending offset and covers a contiguous stretch
        of the delivered ones — is a walk that pops the deque, no set at all.
        """
        pending = self._pending
        finished = self._done
        count = len(offsets)
        if count and not finished and len(pending) >= count and pending[0] == offsets[0] \
                and offsets[-1] - offsets[0] == count - 1 and pending[count - 1] == offsets[-1]:
            # The run is exactly the oldest `count` pending offsets (contiguous,
            # nothing done out of order): the partition-mode common case.
            for _ in range(count):
                pending.popleft()
            self._committable = offsets[-1] + 1
            return
        i = 0
        last = None
        while i < count and pending:
            head = pending[0]
            offset = offsets[i]
            if offset == head:
                last = pending.popleft()
                i += 1
            elif head in finished:
                finished.discard(head)
                last = pending.popleft()
            elif offset < head:
                i += 1  # unknown, repeated or already committable: ignored
            else:
                break
        if i < count and pending:  # the rest lie beyond the oldest pending offset
            finished.update(offsets[i:])
        while finished and pending and pending[0] in finished:
            last = pending.popleft()
            finished.discard(last)
        if last is not None:
            self._committable = last + 1

    @property
    def committable(self) -> int | None:
        """The offset to commit (next to consume), or None if nothing is done yet."""
        return self._committable

    @property
    def oldest_pending(self) -> int | None:
        """The lowest delivered offset not yet done, or None if all are done."""
        return self._pending[0] if self._pending else None

    @property
    def outstanding(self) -> int:
        """Delivered offsets not yet behind the committable point."""
        return len(self._pending)
