"""Metrics gate: `consumer_processing_seconds` — the time a run held its
worker (validation, handling with its retries, dead-letter sends), divided
by its size: one observation per run, of the time per message."""

from __future__ import annotations

import time

from consumer.gates.context import NextRun, RunContext
from consumer.gates.instruments import GateMetrics


class Timing:
    def __init__(self, metrics: GateMetrics) -> None:
        self._metrics = metrics

    async def __call__(self, run: RunContext, call_next: NextRun) -> None:
        started = time.perf_counter()
        try:
            await call_next(run)
        finally:
            records = run.records
            self._metrics.processing(records[0].topic,
                                     (time.perf_counter() - started) / len(records))
