"""When to commit: a pure policy over time and newly done messages."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CommitPolicy:
    """Commit when `every` messages were done since the last commit, or when
    `interval` seconds passed and at least one was. Never with nothing new:
    an empty commit costs a broker round trip and proves nothing."""

    interval: float
    every: int

    def __post_init__(self) -> None:
        if self.interval <= 0 or self.every < 1:
            raise ValueError("interval must be > 0 and every >= 1")

    def due(self, now: float, last_commit: float, done_since: int) -> bool:
        if done_since <= 0:
            return False
        return done_since >= self.every or now - last_commit >= self.interval
