"""The gates' metrics: every call lands on the service's registry, and the
null implementation (no registry) accepts every call."""

from __future__ import annotations

from prometheus_client import generate_latest

from consumer.gates.instruments import GateMetrics
from consumer.observability.metrics import Metrics


def exercise(m: GateMetrics) -> None:
    m.outcome("t", "ok", 3)
    m.processing("t", 0.01)
    m.retry("t")
    m.attempts(2)
    m.dead_lettered("t", "InvalidEvent")
    m.dlq_send_failed()
    m.dlq_refused()
    m.breaker(True)
    m.limiter_wait("billing", 0.1)
    m.limiter_rate("billing", 5.0)
    m.throttled("billing", 429)


def test_every_instrument_reaches_the_registry() -> None:
    metrics = Metrics()
    exercise(GateMetrics(metrics))
    text = generate_latest(metrics.registry).decode()
    for line in ('consumer_messages_total{outcome="ok",topic="t"} 3.0',
                 'consumer_retries_total{topic="t"} 1.0',
                 'consumer_dlq_messages_total{reason="InvalidEvent",topic="t"} 1.0',
                 "consumer_dlq_send_failures_total 1.0", "consumer_dlq_refused_total 1.0",
                 "consumer_dlq_breaker_open 1.0",
                 'consumer_ratelimit_rate{downstream="billing"} 5.0',
                 'consumer_ratelimit_throttled_total{downstream="billing",status="429"} 1.0'):
        assert line in text


def test_without_a_registry_every_call_is_a_no_op() -> None:
    null = GateMetrics(None)
    exercise(null)  # none of them raises
    assert null._child("messages", topic="t", outcome="ok") is None  # no instrument behind

