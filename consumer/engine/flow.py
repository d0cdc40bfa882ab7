"""Flow control: in-flight accounting and the pause/resume decision.

Pure state machine. A record is in flight from the moment it is fetched until
it is done. Limits are global (messages and bytes); each assigned partition
gets an equal share of them.

- Global high watermark (the limit) reached: every partition is paused until
  the total falls to the global low watermark (`resume_ratio` of the limit).
- Between the two watermarks (under pressure): the partitions at or over their
  share are paused — the ones hogging the budget — until they fall to
  `resume_ratio` of their share, so the others keep flowing.
- Below the low watermark nothing is paused.

Pausing is not free: aiokafka drops what it had prefetched for a paused
partition and fetches it again on resume. Pausing only under pressure, with
hysteresis, keeps a fast pipeline from flapping.
"""

from __future__ import annotations

from collections.abc import Set

from consumer.types import TP


class Load:
    """In-flight messages and bytes of one partition."""

    __slots__ = ("bytes", "messages")

    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0


class FlowControl:
    __slots__ = ("_loads", "_saturated", "bytes", "max_bytes", "max_messages", "messages",
                 "resume_ratio")

    def __init__(self, max_messages: int, max_bytes: int, resume_ratio: float = 0.5) -> None:
        if max_messages < 1 or max_bytes < 1 or not 0 < resume_ratio < 1:
            raise ValueError("limits must be positive and 0 < resume_ratio < 1")
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.resume_ratio = resume_ratio
        self.messages = 0
        self.bytes = 0
        self._loads: dict[TP, Load] = {}
        self._saturated = False

    def assign(self, tp: TP) -> Load:
        """Start accounting for `tp` (a fresh assignment)."""
        load = self._loads[tp] = Load()
        return load

    def revoke(self, tp: TP) -> None:
        """Stop sharing the limit with `tp`. Its late completions still release
        the global totals through the `Load` they hold."""
        self._loads.pop(tp, None)

    def acquire(self, load: Load, messages: int, nbytes: int) -> None:
        load.messages += messages
        load.bytes += nbytes
        self.messages += messages
        self.bytes += nbytes

    def release(self, load: Load, messages: int, nbytes: int) -> None:
        load.messages -= messages
        load.bytes -= nbytes
        self.messages -= messages
        self.bytes -= nbytes

    def capacity(self) -> int:
        """How many more messages may be fetched now (0 when full)."""
        return max(0, self.max_messages - self.messages)

    def fetch_limit(self, most: int) -> int:
        """How many records the next fetch should ask for, at least 1.

        Up to the low watermark while below it, so that fetching alone never
        creates pressure (and pauses); only processing that falls behind does.
        Above it, whatever capacity is left.
        """
        headroom = int(self.max_messages * self.resume_ratio) - self.messages - 1
        room = headroom if headroom > 0 else self.capacity()
        return max(1, min(most, room))

    def decide(self, paused: Set[TP]) -> set[TP]:
        """The partitions that should be paused now, given those paused now."""
        ratio = self.resume_ratio
        if self.messages >= self.max_messages or self.bytes >= self.max_bytes:
            self._saturated = True
        elif (self.messages <= self.max_messages * ratio
              and self.bytes <= self.max_bytes * ratio):
            self._saturated = False
        if self._saturated:
            return set(self._loads)
        if self.messages < self.max_messages * ratio and self.bytes < self.max_bytes * ratio:
            return set()
        count = len(self._loads) or 1
        share_m = self.max_messages / count
        share_b = self.max_bytes / count
        result: set[TP] = set()
        for tp, load in self._loads.items():
            if load.messages >= share_m or load.bytes >= share_b or (
                tp in paused
                and (load.messages > share_m * ratio or load.bytes > share_b * ratio)
            ):
                result.add(tp)
        return result
