"""Prometheus metrics, on a registry of the service's own (no global state,
so tests and several services in one process do not collide).

Labels stay bounded: topic, partition, outcome, reason — never an event id or
a key.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PREFIX = "consumer"


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # Engine
        self.messages = Counter(f"{PREFIX}_messages", "Messages by final outcome.",
                                ["topic", "outcome"], registry=r)
        self.fetched = Counter(f"{PREFIX}_fetched_messages", "Records fetched from Kafka.",
                               ["topic"], registry=r)
        self.in_flight_messages = Gauge(f"{PREFIX}_in_flight_messages",
                                        "Messages fetched and not yet done.", registry=r)
        self.in_flight_bytes = Gauge(f"{PREFIX}_in_flight_bytes",
                                     "Bytes of messages fetched and not yet done.", registry=r)
        self.paused_partitions = Gauge(f"{PREFIX}_paused_partitions",
                                       "Partitions paused by flow control.", registry=r)
        self.assigned_partitions = Gauge(f"{PREFIX}_assigned_partitions",
                                         "Partitions assigned to this member.", registry=r)
        self.processing_seconds = Histogram(
            f"{PREFIX}_processing_seconds", "Time from handler start to handler return.",
            ["topic"], registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
                     5, 10, 30))
        self.committed_offset = Gauge(f"{PREFIX}_committed_offset",
                                      "Last offset committed.", ["topic", "partition"],
                                      registry=r)
        self.lag = Gauge(f"{PREFIX}_lag",
                         "High watermark minus the committable offset.",
                         ["topic", "partition"], registry=r)
        self.rebalances = Counter(f"{PREFIX}_rebalances", "Partition revocations and assignments.",
                                  ["kind"], registry=r)
        self.commit_seconds = Histogram(f"{PREFIX}_commit_seconds", "Offset commit latency.",
                                        registry=r)
        self.commit_failures = Counter(f"{PREFIX}_commit_failures", "Failed offset commits.",
                                       ["reason"], registry=r)
        self.dropped_on_revoke = Counter(
            f"{PREFIX}_revoked_unprocessed_messages",
            "Fetched messages left for the next owner on revocation.", registry=r)
        # Sinks and batching (consumer/sinks/batcher.py)
        self.sink_batch_rows = Histogram(
            f"{PREFIX}_sink_batch_rows", "Rows per batch written.", ["sink"], registry=r,
            buckets=(1, 10, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000))
        self.sink_flush_seconds = Histogram(
            f"{PREFIX}_sink_flush_seconds", "Duration of a successful batch write.", ["sink"],
            registry=r, buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                 2.5, 5, 10))
        self.sink_rows_written = Counter(f"{PREFIX}_sink_rows_written", "Rows written.",
                                         ["sink"], registry=r)
        self.sink_errors = Counter(f"{PREFIX}_sink_errors", "Failed batch writes, by whether "
                                   "they are retried (true) or bisected (false).",
                                   ["sink", "retriable"], registry=r)
        self.sink_poison_rows = Counter(f"{PREFIX}_sink_poison_rows", "Rows the sink refused, "
                                        "isolated by bisection.", ["sink"], registry=r)
        # Dead-letter
        self.dlq_messages = Counter(f"{PREFIX}_dlq_messages", "Messages sent to the dead-letter "
                                    "topic.", ["topic", "reason"], registry=r)
        # Gates: retry, dead-letter breaker, rate limiter (consumer/gates/)
        self.retries = Counter(f"{PREFIX}_retries", "Handler attempts that failed and were "
                               "tried again.", ["topic"], registry=r)
        self.handler_attempts = Histogram(f"{PREFIX}_handler_attempts", "Attempts per message.",
                                          registry=r, buckets=(1, 2, 3, 5, 8, 13, 21))
        self.dlq_send_failures = Counter(f"{PREFIX}_dlq_send_failures", "Dead-letter sends that "
                                         "failed and are retried (message kept in flight).",
                                         registry=r)
        self.dlq_breaker_open = Gauge(f"{PREFIX}_dlq_breaker_open", "1 once the dead-letter "
                                      "circuit breaker tripped (consumption stopped).",
                                      registry=r)
        self.ratelimit_wait_seconds = Histogram(
            f"{PREFIX}_ratelimit_wait_seconds", "Time waiting for a downstream's rate limiter.",
            ["downstream"], registry=r,
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.ratelimit_rate = Gauge(f"{PREFIX}_ratelimit_rate", "Current allowed request rate "
                                    "per downstream (adaptive).", ["downstream"], registry=r)
        self.ratelimit_throttled = Counter(f"{PREFIX}_ratelimit_throttled", "429/503 answers "
                                           "from a downstream.", ["downstream", "status"],
                                           registry=r)
        # Event loop (consumer/observability/loop.py)
        self.event_loop_lag = Histogram(
            f"{PREFIX}_event_loop_lag_seconds", "How late a 100 ms timer fires: the longest "
            "stretch of synchronous work the loop ran meanwhile.", registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
