"""The gates' view of `consumer.observability.metrics.Metrics`.

Every instrument is optional: a missing attribute (or `metrics=None` in unit
tests) turns the call into a no-op, so the gates never fail over telemetry.
Labels stay bounded: topics, downstream names, outcomes, error class names.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("consumer.gates")


class GateMetrics:
    def __init__(self, metrics: Any = None) -> None:
        self._metrics = metrics
        # prometheus-client's labels() costs more than the increment itself;
        # the label sets are bounded, so their children are kept here.
        self._children: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}

    def _child(self, name: str, **labels: str) -> Any:
        key = (name, tuple(labels.items()))
        try:
            return self._children[key]
        except KeyError:
            pass
        family = getattr(self._metrics, name, None) if self._metrics is not None else None
        child = family
        if family is not None and labels:
            try:
                child = family.labels(**labels)
            except ValueError:  # a label set that differs from ours: skip, don't crash
                log.debug("metric %s does not take labels %s", name, sorted(labels))
                child = None
        self._children[key] = child
        return child

    def outcome(self, topic: str, outcome: str, count: int = 1) -> None:
        """`outcome`: ok, dead_lettered, invalid."""
        if (c := self._child("messages", topic=topic, outcome=outcome)) is not None:
            c.inc(count)

    def processing(self, topic: str, seconds: float) -> None:
        if (h := self._child("processing_seconds", topic=topic)) is not None:
            h.observe(seconds)

    def retry(self, topic: str) -> None:
        if (c := self._child("retries", topic=topic)) is not None:
            c.inc()

    def attempts(self, count: int) -> None:
        if (h := self._child("handler_attempts")) is not None:
            h.observe(count)

    def dead_lettered(self, topic: str, reason: str) -> None:
        """`reason`: the error class name (a bounded set)."""
        if (c := self._child("dlq_messages", topic=topic, reason=reason)) is not None:
            c.inc()

    def dlq_send_failed(self) -> None:
        if (c := self._child("dlq_send_failures")) is not None:
            c.inc()

    def dlq_refused(self) -> None:
        if (c := self._child("dlq_refused")) is not None:
            c.inc()

    def breaker(self, is_open: bool) -> None:
        if (g := self._child("dlq_breaker_open")) is not None:
            g.set(1 if is_open else 0)

    def limiter_wait(self, downstream: str, seconds: float) -> None:
        if (h := self._child("ratelimit_wait_seconds", downstream=downstream)) is not None:
            h.observe(seconds)

    def limiter_rate(self, downstream: str, rate: float) -> None:
        if (g := self._child("ratelimit_rate", downstream=downstream)) is not None:
            g.set(rate)

    def throttled(self, downstream: str, status: int) -> None:
        child = self._child("ratelimit_throttled", downstream=downstream,
                            status=str(status))
        if child is not None:
            child.inc()
