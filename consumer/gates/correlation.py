"""Logging gate: the event id as correlation id (the `correlation_id`
context variable, which every log line of the attempt carries) while a
record is handled. A run of many has no single id: its lines carry none."""

from __future__ import annotations

import logging

from consumer.gates.context import NextRun, RunContext
from consumer.observability.logging import correlation_id

log = logging.getLogger("consumer.gates")


class Correlation:
    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or log

    async def __call__(self, run: RunContext, call_next: NextRun) -> None:
        event_id = getattr(run.events[0], "id", None) if len(run.events) == 1 else None
        token = correlation_id.set(None if event_id is None else str(event_id))
        try:
            if self._log.isEnabledFor(logging.DEBUG):
                record = run.records[0]
                self._log.debug("handling %s", event_id or f"a run of {len(run.records)}",
                                extra={"correlation_id": event_id, "topic": record.topic,
                                       "partition": record.partition, "offset": record.offset})
            await call_next(run)
        finally:
            correlation_id.reset(token)
