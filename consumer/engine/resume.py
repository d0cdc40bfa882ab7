"""Exactly-once delivery, the engine's side: take partitions over on
assignment and resume them where the database says.

On assignment the engine `claim`s the new partitions in the offset store (the
PostgreSQL sink): each partition's fencing epoch goes up by one — from then on
a previous owner's write for it is refused — and the stored progress comes
back. The consumer then seeks to the stored position when it is ahead of
Kafka's committed offset (a crash between the database commit and the Kafka
commit), and the records the stored progress marks done above it are
completed without being handled (`PartitionState.split_done`).

While the claim is under way (a database round trip inside the rebalance
callback, which aiokafka awaits after the assignment is already in place) the
fetch routine drops what it fetches for those partitions, and `resume` seeks
back to the first offset it dropped when nothing else says where to start.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection

from aiokafka.errors import KafkaError

from consumer.backoff import Backoff
from consumer.engine.partition import PartitionState
from consumer.engine.progress import Progress
from consumer.engine.source import Consumer
from consumer.errors import ConsumerError
from consumer.types import TP, Claim, OffsetStore, Position

log = logging.getLogger("consumer.engine")

_CLAIM_BACKOFF = Backoff(0.2, 5.0, min_delay=0.1)


def position_of(state: PartitionState | None) -> Position | None:
    """The `Position` a write may carry for `state`: None unless the
    partition is still ours (active or draining) and was claimed."""
    if state is None or state.epoch is None or state.revoked:
        return None
    tracker = state.tracker
    return Position(state.epoch, tracker.committable, tracker.done_above())


async def claim(store: OffsetStore, tps: Collection[TP],
                stopping: Callable[[], bool]) -> dict[TP, Claim]:
    """Claim `tps`, retrying while the database is away (nothing of these
    partitions can be written without a claim); {} once the engine is
    stopping, leaving them unclaimed."""
    attempt = 0
    while True:
        try:
            return await store.claim(tps)
        except (ConsumerError, OSError) as exc:
            attempt += 1
            if stopping():
                log.warning("partitions not claimed before stopping: %r", exc)
                return {}
            delay = _CLAIM_BACKOFF.delay(attempt)
            log.warning("claiming partitions failed (attempt %d), retrying in %.1fs: %r",
                        attempt, delay, exc)
            await asyncio.sleep(delay)


async def resume(consumer: Consumer, state: PartitionState, claimed: Claim,
                 within: float) -> None:
    """Take the claim into `state` and seek where its partition resumes."""
    stored: Progress = claimed.progress
    committed: int | None = None
    if stored.position is not None:
        try:
            async with asyncio.timeout(within):
                committed = await consumer.committed_offset(state.tp)
        except (KafkaError, TimeoutError) as exc:
            # The stored position is safe on its own: only records done
            # without a row after the last write would be handled again.
            log.warning("committed offset of %s unknown, resuming from the database: %r",
                        state.tp, exc)
    start = stored.position
    if start is None or (committed is not None and committed > start):
        start = committed
    if start is None:
        start = state.unfetched  # nothing known: where the fetch began
    if start is not None:
        consumer.seek(state.tp, start)
        # Nothing below `start` is left to do: the engine commits it to Kafka
        # at once (the database may be ahead), before any new completion.
        state.tracker.skip_to(start)
        state.committed = committed
    end = stored.end
    state.claimed(claimed.epoch,
                  stored if end is not None and (start is None or end > start) else None)
    log.info("partition claimed", extra={
        "partition": f"{state.tp.topic}[{state.tp.partition}]", "epoch": claimed.epoch,
        "stored_position": stored.position, "kafka_committed": committed, "resume_at": start,
        "done_above": sum(b - a for a, b in stored.ranges)})
