"""Commits explicit offsets for assigned partitions, bounded by a timeout.

Never `commit()` without arguments: aiokafka would commit what was *fetched*,
not what is done. A commit that fails because of a rebalance is dropped: the
revocation path commits the revoked partitions itself, and fenced states
(`PartitionState.revoked`) never offer an offset again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Set

from aiokafka.errors import KafkaError

from consumer.engine.partition import PartitionState
from consumer.engine.source import Consumer
from consumer.observability.metrics import Metrics
from consumer.types import TP

log = logging.getLogger("consumer.engine")


class Committer:
    def __init__(self, consumer: Consumer, metrics: Metrics, timeout: float) -> None:
        self._consumer = consumer
        self._metrics = metrics
        self._timeout = timeout
        # One commit at a time: the periodic routine and a revocation may race.
        self._lock = asyncio.Lock()

    async def commit(self, states: Iterable[PartitionState], assigned: Set[TP]) -> bool:
        """Commit every state's committable offset that moved. Returns False if
        the commit failed (it is logged and counted, never raised)."""
        async with self._lock:
            offsets: dict[TP, int] = {}
            chosen: list[PartitionState] = []
            for state in list(states):
                offset = state.pending_commit()
                if offset is not None and state.tp in assigned:
                    offsets[state.tp] = offset
                    chosen.append(state)
            if not offsets:
                return True
            started = time.monotonic()
            try:
                async with asyncio.timeout(self._timeout):
                    await self._consumer.commit(offsets)
            except TimeoutError:
                self._metrics.commit_failures.labels("timeout").inc()
                log.warning("commit timed out", extra={"timeout": self._timeout})
                return False
            except KafkaError as exc:
                # Rebalance in progress, member evicted, partition no longer
                # ours: the offsets stay uncommitted and will be redelivered.
                self._metrics.commit_failures.labels(type(exc).__name__).inc()
                log.warning("commit failed: %r", exc)
                return False
            self._metrics.commit_seconds.observe(time.monotonic() - started)
            gauge = self._metrics.committed_offset
            landed = self._metrics.last_commit_timestamp
            now = time.time()
            for state in chosen:
                offset = offsets[state.tp]
                state.committed = offset
                labels = (state.tp.topic, str(state.tp.partition))
                gauge.labels(*labels).set(offset)
                landed.labels(*labels).set(now)
            return True
