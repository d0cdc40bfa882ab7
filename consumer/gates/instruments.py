"""The gates' view of `consumer.observability.metrics.Metrics`.

Typed: each instrument is a `Metrics` attribute read once, in the
constructor, so mypy sees every name and a rename fails the type check
instead of silencing a metric. `metrics=None` (unit tests) is the null
implementation: every call is a no-op. Labels stay bounded: topics,
downstream names, outcomes, error class names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from consumer.observability.metrics import Metrics


class GateMetrics:
    def __init__(self, metrics: Metrics | None = None) -> None:
        self._families: dict[str, Any] = {} if metrics is None else {
            "messages": metrics.messages, "processing_seconds": metrics.processing_seconds,
            "retries": metrics.retries, "handler_attempts": metrics.handler_attempts,
            "dlq_messages": metrics.dlq_messages, "dlq_send_failures": metrics.dlq_send_failures,
            "dlq_refused": metrics.dlq_refused, "dlq_breaker_open": metrics.dlq_breaker_open,
            "ratelimit_wait_seconds": metrics.ratelimit_wait_seconds,
            "ratelimit_rate": metrics.ratelimit_rate,
            "ratelimit_throttled": metrics.ratelimit_throttled,
        }
        # prometheus-client's labels() costs more than the increment itself;
        # the label sets are bounded, so their children are kept here.
        self._children: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}

    def _child(self, name: str, **labels: str) -> Any:
        """The instrument `name` (one of the families above) for `labels`, or
        None under the null implementation."""
        key = (name, tuple(labels.items()))
        try:
            return self._children[key]
        except KeyError:
            pass
        family = self._families.get(name)
        child = family.labels(**labels) if family is not None and labels else family
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

