"""Offset tracker: which offset of a partition may be committed.

Pure state machine, one per assigned partition (per assignment generation).
Offsets are *delivered* in increasing order (with gaps: compaction and
transaction markers leave holes) and *done* in any order. The committable
offset is the highest delivered offset below which every delivered offset is
done, plus one: committing it can never skip an unfinished message.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable


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
        last = self._last_delivered
        pending = self._pending
        for offset in offsets:
            if offset <= last:
                raise ValueError(f"offset {offset} delivered after {last}")
            pending.append(offset)
            last = offset
        self._last_delivered = last

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
