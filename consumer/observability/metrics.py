"""Prometheus metrics, on a registry of the service's own (no global state,
so tests and several services in one process do not collide).

Labels stay bounded: topic, partition, outcome, reason, sink, downstream —
never an event id or a key. Every metric is listed, with its meaning, in
docs/OBSERVABILITY.md; the dashboard and the alert rules read only these names.
"""

from __future__ import annotations

import platform
from importlib import metadata

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
)

from consumer.observability.age import RecordAges

PREFIX = "consumer"

#: Final outcomes of a message (`consumer_messages_total{outcome}`).
OUTCOMES = ("ok", "dead_lettered", "invalid")
#: `consumer_schema_registry_requests_total{outcome}`.
REGISTRY_OUTCOMES = ("ok", "not_found", "unreachable", "timeout", "refused", "status")
#: `consumer_rebalances_total{kind}`.
REBALANCE_KINDS = ("assigned", "revoked")
#: Age buckets (seconds) of `consumer_record_age_seconds`: from a live
#: pipeline (milliseconds) to a backlog of a day.
AGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
               600, 1800, 3600, 7200, 21600, 86400)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # Process (CPU, RSS, open fds) and build
        ProcessCollector(registry=r)
        self.build_info = Gauge(f"{PREFIX}_build_info", "Always 1; the labels say what runs.",
                                ["version", "python", "aiokafka"], registry=r)
        self.build_info.labels(_version("consumer"), platform.python_version(),
                               _version("aiokafka")).set(1)
        # Configured limits, for saturation panels
        self.in_flight_limit_messages = Gauge(
            f"{PREFIX}_in_flight_limit_messages", "Configured in-flight message limit "
            "(CONSUMER_MAX_IN_FLIGHT).", registry=r)
        self.in_flight_limit_bytes = Gauge(
            f"{PREFIX}_in_flight_limit_bytes", "Configured in-flight bytes limit "
            "(CONSUMER_MAX_IN_FLIGHT_BYTES).", registry=r)
        self.concurrency = Gauge(f"{PREFIX}_concurrency", "Configured worker count "
                                 "(CONSUMER_CONCURRENCY).", registry=r)
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
            f"{PREFIX}_processing_seconds", "Time per message in the pipeline: a run's time "
            "holding its worker (validation, attempts, dead-letter sends) over its size.",
            ["topic"], registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
                     5, 10, 30))
        self.committed_offset = Gauge(f"{PREFIX}_committed_offset",
                                      "Last offset committed.", ["topic", "partition"],
                                      registry=r)
        self.lag = Gauge(f"{PREFIX}_lag",
                         "High watermark minus the committable offset.",
                         ["topic", "partition"], registry=r)
        self.lag_seconds = Gauge(
            f"{PREFIX}_lag_seconds", "Age of the oldest record not yet done (0 when caught "
            "up; see docs/OBSERVABILITY.md for the estimate when none is fetched).",
            ["topic", "partition"], registry=r)
        self.partition_paused = Gauge(
            f"{PREFIX}_partition_paused", "1 while flow control keeps the partition paused.",
            ["topic", "partition"], registry=r)
        self.partition_in_flight = Gauge(
            f"{PREFIX}_partition_in_flight_messages", "The partition's messages fetched and "
            "not yet done.", ["topic", "partition"], registry=r)
        self.last_commit_timestamp = Gauge(
            f"{PREFIX}_last_commit_timestamp_seconds", "Wall-clock time (Unix seconds) the "
            "last commit of the partition's offset landed.", ["topic", "partition"],
            registry=r)
        self.record_ages = RecordAges(
            f"{PREFIX}_record_age_seconds", "Broker timestamp of a record to its done.",
            AGE_BUCKETS, registry=r)
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
        self.handler_attempts = Histogram(f"{PREFIX}_handler_attempts", "Handler attempts per "
                                          "handled run (a record alone, or a run handled whole).",
                                          registry=r, buckets=(1, 2, 3, 5, 8, 13, 21))
        self.dlq_send_failures = Counter(f"{PREFIX}_dlq_send_failures", "Dead-letter sends that "
                                         "failed and are retried (message kept in flight).",
                                         registry=r)
        self.dlq_refused = Counter(f"{PREFIX}_dlq_refused", "Messages the dead-letter topic "
                                   "refused even in their smallest form: left in flight, "
                                   "their partition cannot commit past them.", registry=r)
        self.dlq_breaker_open = Gauge(f"{PREFIX}_dlq_breaker_open", "1 once the dead-letter "
                                      "circuit breaker tripped (consumption stopped).",
                                      registry=r)
        self.ratelimit_wait_seconds = Histogram(
            f"{PREFIX}_ratelimit_wait_seconds", "Time waiting for a downstream's rate limiter.",
            ["downstream"], registry=r,
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.ratelimit_rate = Gauge(f"{PREFIX}_ratelimit_rate", "Current allowed request rate "
                                    "per downstream (adaptive), requests per second.",
                                    ["downstream"], registry=r)
        self.ratelimit_throttled = Counter(f"{PREFIX}_ratelimit_throttled", "429/503 answers "
                                           "from a downstream.", ["downstream", "status"],
                                           registry=r)
        # Schema registry (consumer/formats/, only with CONSUMER_VALUE_FORMAT != json)
        self.schema_registry_requests = Counter(
            f"{PREFIX}_schema_registry_requests", "Requests to the schema registry by outcome: "
            "ok, not_found, and the errors unreachable, timeout, refused, status.",
            ["outcome"], registry=r)
        self.schema_cache_hits = Counter(
            f"{PREFIX}_schema_cache_hits", "Wire-format values whose writer schema (or "
            "its absence) was already known.", registry=r)
        self.schema_cache_misses = Counter(
            f"{PREFIX}_schema_cache_misses", "Schema ids fetched from the registry (one per "
            "id, however many values wanted it at once).", registry=r)
        # Event loop (consumer/observability/loop.py)
        self.event_loop_lag = Histogram(
            f"{PREFIX}_event_loop_lag_seconds", "How late a 100 ms timer fires: the longest "
            "stretch of synchronous work the loop ran meanwhile.", registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))

    def declare(self, *, topics: list[str], sink: str, max_in_flight: int,
                max_in_flight_bytes: int, concurrency: int) -> None:
        """Set the configured limits and create every label value known at
        start-up, so a quiet service reads 0 instead of having no series."""
        self.in_flight_limit_messages.set(max_in_flight)
        self.in_flight_limit_bytes.set(max_in_flight_bytes)
        self.concurrency.set(concurrency)
        self.dlq_breaker_open.set(0)
        for kind in REBALANCE_KINDS:
            self.rebalances.labels(kind)
        for topic in topics:
            self.fetched.labels(topic)
            self.processing_seconds.labels(topic)
            self.retries.labels(topic)
            self.record_ages.labels(topic)
            # Invalid events are the one dead-letter reason every service has.
            self.dlq_messages.labels(topic, "InvalidEvent")
            for outcome in OUTCOMES:
                self.messages.labels(topic, outcome)
        self.commit_failures.labels("timeout")
        self.sink_batch_rows.labels(sink)
        self.sink_flush_seconds.labels(sink)
        self.sink_rows_written.labels(sink)
        self.sink_poison_rows.labels(sink)
        for retriable in ("true", "false"):
            self.sink_errors.labels(sink, retriable)
        for outcome in REGISTRY_OUTCOMES:
            self.schema_registry_requests.labels(outcome)


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"
