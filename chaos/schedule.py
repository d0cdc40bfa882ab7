"""The fault schedule: a pure, seeded generator.

`plan(seed, ...)` returns the same faults for the same seed and arguments, so
a failing chaos run replays with `make chaos SEED=<seed>`. Each fault has a
start time (seconds since the run began), a kind, a target and a hold (how
long it lasts, or the delay before the restart). Faults overlap — several at
once is the point — but never two on the same target: a member is not killed
while it is stopped, the broker is not restarted while it restarts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    SIGKILL = "sigkill"  # a member dies; restarted after `hold`
    SIGTERM = "sigterm"  # a member drains and exits 0; restarted after `hold`
    SIGSTOP = "sigstop"  # a member frozen for `hold` s (past the session timeout), then SIGCONT
    JOIN = "join"  # an extra member joins, lives `hold` s, leaves with SIGTERM
    BROKER = "broker"  # SIGKILL the broker, restart it on the same data directory
    POSTGRES = "postgres"  # stop PostgreSQL for `hold` s, start it again
    HTTP_429 = "http429"  # the downstream answers 429 for `hold` s
    HTTP_500 = "http500"  # the downstream answers 500 for `hold` s


MEMBER_KINDS = frozenset({Kind.SIGKILL, Kind.SIGTERM, Kind.SIGSTOP})
#: Shared targets of the other kinds.
TARGETS = {Kind.JOIN: "joiner", Kind.BROKER: "broker", Kind.POSTGRES: "postgres",
           Kind.HTTP_429: "downstream", Kind.HTTP_500: "downstream"}


@dataclass(frozen=True, slots=True)
class Timing:
    """Hold ranges (seconds) and how long a target stays busy after its hold
    (restart, rejoin, recovery) before another fault may hit it."""

    session_timeout: float = 10.0
    restart_delay: tuple[float, float] = (1.0, 4.0)
    stop_extra: tuple[float, float] = (2.0, 6.0)  # SIGSTOP beyond the session timeout
    join_life: tuple[float, float] = (10.0, 25.0)
    outage: tuple[float, float] = (4.0, 12.0)  # PostgreSQL and downstream
    settle: float = 8.0
    broker_busy: float = 30.0
    drain_busy: float = 10.0  # SIGTERM and the joiner leaving: the drain

    def busy(self, kind: Kind, hold: float) -> float:
        """How long `kind` with `hold` keeps its target from the next fault."""
        drain = self.drain_busy + self.settle
        extra = {Kind.BROKER: self.broker_busy, Kind.SIGTERM: drain, Kind.JOIN: drain,
                 Kind.SIGSTOP: self.session_timeout + self.settle}.get(kind, self.settle)
        return hold + extra


@dataclass(frozen=True, slots=True)
class Fault:
    at: float  # seconds since the start of the run
    kind: Kind
    target: str  # a member name, "joiner", "broker", "postgres" or "downstream"
    hold: float

    def describe(self) -> str:
        return f"{self.kind.value} {self.target} hold={self.hold:.1f}s at t={self.at:.1f}s"


def plan(seed: int, *, count: int, start: float, end: float, members: list[str],
         timing: Timing | None = None, kinds: list[Kind] | None = None) -> list[Fault]:
    """`count` faults starting in [start, end], sorted by start time.

    Every kind in `kinds` (default: all) appears at least once when `count`
    allows; the rest are drawn at random. Start times are spread at random
    around an even spacing; a fault whose target is still busy waits for it,
    so a crowded schedule may start a little after `end`. Pure.
    """
    if count < 0 or end < start or not members:
        raise ValueError("need count >= 0, end >= start and at least one member")
    timing = timing or Timing()
    rng = random.Random(seed)
    pool = list(kinds or Kind)
    order = rng.sample(pool, len(pool))[:count]
    order += [rng.choice(pool) for _ in range(count - len(order))]
    rng.shuffle(order)
    # Uneven gaps, scaled so the last nominal start is `end`.
    gaps = [rng.uniform(0.4, 1.6) for _ in order]
    total = sum(gaps)
    free_at: dict[str, float] = {}
    faults: list[Fault] = []
    at = start
    nominal = 0.0
    for i, gap in enumerate(gaps):
        nominal += gap
        at = max(at, start + (end - start) * nominal / total)

        def ready(kind: Kind) -> float:
            if kind in MEMBER_KINDS:
                return min(free_at.get(m, start) for m in members)
            return free_at.get(TARGETS[kind], start)

        # The first remaining kind whose target is free now goes next, so a
        # busy target delays its fault only when every target is busy.
        j = next((j for j in range(i, len(order)) if ready(order[j]) <= at), i)
        order[i], order[j] = order[j], order[i]
        kind = order[i]
        hold = _hold(rng, kind, timing)
        if kind in MEMBER_KINDS:
            target = min(members, key=lambda m: (free_at.get(m, start), rng.random()))
        else:
            target = TARGETS[kind]
        at = max(at, free_at.get(target, start))
        free_at[target] = at + timing.busy(kind, hold)
        faults.append(Fault(at, kind, target, hold))
    return faults


def _hold(rng: random.Random, kind: Kind, timing: Timing) -> float:
    if kind in (Kind.SIGKILL, Kind.SIGTERM):
        return rng.uniform(*timing.restart_delay)
    if kind is Kind.SIGSTOP:
        return timing.session_timeout + rng.uniform(*timing.stop_extra)
    if kind is Kind.JOIN:
        return rng.uniform(*timing.join_life)
    if kind is Kind.BROKER:
        return 0.0
    return rng.uniform(*timing.outage)
