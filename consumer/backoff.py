"""Exponential backoff with full jitter, capped: the one wait between tries
of anything that retries (dead-letter sends, sink writes).

Full jitter (a uniform draw in [0, cap]) spreads the retries of many
instances that failed together; the cap bounds the longest wait, so an
outage is retried at most `max_delay` apart for as long as it lasts. Pure:
the random draw is an argument where a test needs it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    base_delay: float
    max_delay: float
    #: The shortest wait: a loop that retries must never spin.
    min_delay: float = 0.01

    def cap(self, attempt: int) -> float:
        """Upper bound of the wait after failed attempt `attempt` (1-based)."""
        # min() on the exponent first: 2**big would overflow a float.
        return min(self.max_delay, self.base_delay * 2.0 ** min(max(attempt, 1) - 1, 60))

    def delay(self, attempt: int, rand: float | None = None) -> float:
        """The wait after failed attempt `attempt`: uniform in
        [min_delay, cap]; `rand` is a draw from [0, 1] (random when None)."""
        draw = random.random() if rand is None else rand
        return max(self.min_delay, draw * self.cap(attempt))
