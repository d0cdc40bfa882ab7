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
            self.reason = self._ratio_reason()
        return self.open

    def record_passed(self, count: int) -> bool:
        """Count `count` messages that were not dead-lettered, in one step: the
        same state and the same answer as `record(False)` that many times.

        A good message can trip the ratio only when it fills the window or is
        the first to slide it (later ones only lower the share), so only that
        step is judged; the rest are appended in bulk.
        """
        if self.open or count <= 0:
            return False
        recent = self._recent
        self._run = 0
        step = min(count, self.window - len(recent)) if len(recent) < self.window else 1
        for _ in range(2):
            recent.extend([False] * step)
            while len(recent) > self.window:
                self._dead -= recent.popleft()
            count -= step
            if len(recent) >= self.window and self._dead > self.ratio * self.window:
                self.reason = self._ratio_reason()
                return True
            step = min(count, self.window)
            if step <= 0:
                break
        return False

    def _ratio_reason(self) -> str:
        return (f"{self._dead} of the last {self.window} messages dead-lettered "
                f"(limit {self.ratio:.0%})")
