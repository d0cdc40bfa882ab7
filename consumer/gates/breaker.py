"""Dead-letter circuit breaker (pure): a bad deploy must not dead-letter a
whole topic.

Trips when, among the last `window` finished messages, the share that was
dead-lettered exceeds `ratio` (judged only once the window is full, so the
first message of a run cannot trip it), or when `consecutive` messages in a
row were dead-lettered. Once open it stays open: the service stops and a
restart (after the fix) resets it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(slots=True)
class CircuitBreaker:
    ratio: float = 0.5
    window: int = 200
    consecutive: int = 100
    _recent: deque[bool] = field(default_factory=deque, init=False, repr=False)
    _dead: int = field(default=0, init=False)
    _run: int = field(default=0, init=False)
    reason: str | None = field(default=None, init=False)

    @property
    def open(self) -> bool:
        return self.reason is not None

    def record(self, dead_lettered: bool) -> bool:
        """Count one finished message; return True if this one tripped the breaker."""
        if self.open:
            return False
        self._recent.append(dead_lettered)
        self._dead += dead_lettered
        if len(self._recent) > self.window:
            self._dead -= self._recent.popleft()
        self._run = self._run + 1 if dead_lettered else 0
        if self._run >= self.consecutive:
            self.reason = f"{self._run} consecutive messages dead-lettered"
        elif len(self._recent) >= self.window and self._dead > self.ratio * self.window:
            self.reason = (f"{self._dead} of the last {self.window} messages dead-lettered "
                           f"(limit {self.ratio:.0%})")
        return self.open
