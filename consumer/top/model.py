"""What `consumer top` shows, computed from scrapes: pure, no I/O, no clock.

A `Scrape` is one instance's /metrics text parsed (by prometheus-client's own
parser) at a time `at` the caller measured. Rates need two scrapes of the same
instance; `view(prev, cur, ...)` turns them into an `InstanceView`.

Counters are read as Prometheus reads them: a value lower than the one before
is a reset (the process restarted), after which the counter counted from 0.
A restart the counter alone cannot show — it restarted and already counted
past the old value — is caught by `process_start_time_seconds` changing:
then every series counts from 0. What was counted between the last scrape
before a restart and the restart is lost, as it is for Prometheus.

The names read here are the service's (consumer/observability/metrics.py); a
unit test checks each one in `READS` is registered, so a rename cannot
silently blank the view.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

MESSAGES = "consumer_messages_total"
FETCHED = "consumer_fetched_messages_total"
IN_FLIGHT = "consumer_in_flight_messages"
IN_FLIGHT_LIMIT = "consumer_in_flight_limit_messages"
IN_FLIGHT_BYTES = "consumer_in_flight_bytes"
IN_FLIGHT_BYTES_LIMIT = "consumer_in_flight_limit_bytes"
PAUSED = "consumer_paused_partitions"
ASSIGNED = "consumer_assigned_partitions"
PROCESSING_BUCKETS = "consumer_processing_seconds_bucket"
DLQ = "consumer_dlq_messages_total"
RETRIES = "consumer_retries_total"
ROWS_WRITTEN = "consumer_sink_rows_written_total"
FLUSH_BUCKETS = "consumer_sink_flush_seconds_bucket"
SINK_ERRORS = "consumer_sink_errors_total"
LOOP_LAG_BUCKETS = "consumer_event_loop_lag_seconds_bucket"
COMMIT_FAILURES = "consumer_commit_failures_total"
DLQ_SEND_FAILURES = "consumer_dlq_send_failures_total"
BREAKER = "consumer_dlq_breaker_open"
LAG = "consumer_lag"
LAG_SECONDS = "consumer_lag_seconds"
COMMITTED = "consumer_committed_offset"
PARTITION_PAUSED = "consumer_partition_paused"
PARTITION_IN_FLIGHT = "consumer_partition_in_flight_messages"
LAST_COMMIT = "consumer_last_commit_timestamp_seconds"
STARTED = "process_start_time_seconds"

#: Every sample name the view reads.
READS = (MESSAGES, FETCHED, IN_FLIGHT, IN_FLIGHT_LIMIT, IN_FLIGHT_BYTES,
         IN_FLIGHT_BYTES_LIMIT, PAUSED, ASSIGNED, PROCESSING_BUCKETS, DLQ, RETRIES,
         ROWS_WRITTEN, FLUSH_BUCKETS, SINK_ERRORS, LOOP_LAG_BUCKETS, COMMIT_FAILURES,
         DLQ_SEND_FAILURES, BREAKER, LAG, LAG_SECONDS, COMMITTED, PARTITION_PAUSED,
         PARTITION_IN_FLIGHT, LAST_COMMIT, STARTED)

#: Per-partition gauges, by the (topic, partition) labels.
PER_PARTITION = (LAG, LAG_SECONDS, COMMITTED, PARTITION_PAUSED, PARTITION_IN_FLIGHT,
                 LAST_COMMIT)

#: Dead-letter reasons are counted over this many seconds.
REASONS_WINDOW = 60.0

#: `consumer_messages_total{outcome}` values, in the order shown.
OUTCOMES = ("ok", "dead_lettered", "invalid")

Labels = frozenset[tuple[str, str]]
Series = Mapping[Labels, float]


@dataclass(frozen=True, slots=True)
class Scrape:
    """One /metrics answer: sample name -> {labels: value}, taken at `at`
    (seconds on a clock of the caller's choice, the same for every scrape)
    and at `wall` (Unix seconds, for the service's timestamps; None: unknown)."""

    at: float
    samples: Mapping[str, Series]
    wall: float | None = None

    def series(self, name: str, **match: str) -> dict[Labels, float]:
        """The series of `name` whose labels include `match`."""
        want = match.items()
        return {labels: value for labels, value in self.samples.get(name, {}).items()
                if want <= labels}

    def total(self, name: str, **match: str) -> float | None:
        """Sum over the matching series; None when there is none."""
        found = self.series(name, **match)
        return math.fsum(found.values()) if found else None

    @property
    def started(self) -> float | None:
        return self.total(STARTED)


def parse(text: str, at: float, wall: float | None = None) -> Scrape:
    """Parse Prometheus text exposition; raises ValueError on malformed text."""
    samples: dict[str, dict[Labels, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return Scrape(at, samples, wall)


def counter_increase(before: float | None, after: float, *, restarted: bool = False) -> float:
    """How much one counter series counted between two scrapes. `before` is
    None for a series the first scrape did not have (created since: from 0)."""
    if before is None or restarted or after < before:
        return after
    return after - before


def increase(prev: Scrape, cur: Scrape, name: str, **match: str) -> float:
    """Summed increase of the matching series of counter `name` from `prev` to `cur`."""
    restarted = prev.started != cur.started
    before = prev.samples.get(name, {})
    return math.fsum(counter_increase(before.get(labels), value, restarted=restarted)
                     for labels, value in cur.series(name, **match).items())


def increase_by(prev: Scrape, cur: Scrape, name: str, label: str) -> dict[str, float]:
    """Increase of counter `name` per value of `label`; values that did not move left out."""
    out: dict[str, float] = {}
    for labels in cur.series(name):
        value = dict(labels).get(label)
        if value is not None and value not in out:
            out[value] = increase(prev, cur, name, **{label: value})
    return {value: n for value, n in out.items() if n > 0}


def advanced(prev: Scrape, cur: Scrape, name: str) -> float:
    """How far the series of gauge `name` moved up, summed: committed
    offsets, which only move forward while a partition stays assigned (a
    series that is new or gone is not counted: it changed hands)."""
    before = prev.samples.get(name, {})
    return math.fsum(max(0.0, value - before[labels])
                     for labels, value in cur.series(name).items() if labels in before)


def rate(prev: Scrape, cur: Scrape, name: str, **match: str) -> float | None:
    """Per-second increase; None when the scrapes are not in time order."""
    elapsed = cur.at - prev.at
    if elapsed <= 0:
        return None
    return increase(prev, cur, name, **match) / elapsed


def bucket_increases(prev: Scrape, cur: Scrape, name: str) -> dict[float, float]:
    """Histogram buckets (`name` ends in `_bucket`) summed over every other
    label: upper bound -> observations counted at or below it in the interval."""
    restarted = prev.started != cur.started
    before = prev.samples.get(name, {})
    out: dict[float, float] = {}
    for labels, value in cur.samples.get(name, {}).items():
        le = float(dict(labels)["le"])
        out[le] = out.get(le, 0.0) + counter_increase(before.get(labels), value,
                                                      restarted=restarted)
    return out


def quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """`histogram_quantile` as Prometheus computes it: linear interpolation
    inside the bucket the rank falls in; the highest finite bound when it
    falls in +Inf; None with no observations."""
    ordered = sorted(buckets.items())
    if not ordered or not math.isinf(ordered[-1][0]):
        return None
    counts: list[float] = []
    for _, count in ordered:  # a reset mid-interval can break monotonicity: mend it
        counts.append(max(count, counts[-1]) if counts else count)
    total = counts[-1]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for (upper, _), count in zip(ordered, counts, strict=True):
        if count >= rank and count > below:
            if math.isinf(upper):
                return lower
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return lower


@dataclass(frozen=True, slots=True)
class Probe:
    """One /healthz or /readyz answer: HTTP status and body text, or why
    there was none (`error`)."""

    status: int | None
    body: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def reasons(self) -> tuple[str, ...]:
        """The reasons a JSON body lists (`{"ok": false, "reasons": [...]}`,
        as /readyz answers); () for any other body."""
        try:
            parsed = json.loads(self.body)
        except ValueError:
            return ()
        found = parsed.get("reasons") if isinstance(parsed, dict) else None
        return tuple(str(r) for r in found) if isinstance(found, list) else ()

    @property
    def draining(self) -> bool:
        """/readyz says the instance is stopping and finishing its work."""
        return any(r.startswith("draining") for r in self.reasons)


@dataclass(frozen=True, slots=True)
class PartitionRow:
    instance: str
    topic: str
    partition: int
    lag: float | None
    lag_seconds: float | None
    committed: float | None
    paused: bool | None = None
    in_flight: float | None = None
    #: Seconds since its last commit landed, by the scrape's wall clock
    #: (clocks of both hosts in step; never below 0).
    last_commit_age: float | None = None


@dataclass(frozen=True, slots=True)
class Rates:
    """Per second over the last interval, summed over topics."""

    outcomes: Mapping[str, float]
    fetched: float
    dead_letters: float
    retries: float
    committed: float
    rows_written: float
    sink_errors: float
    commit_failures: float
    dlq_send_failures: float
    p99_processing: float | None
    p99_flush: float | None
    p99_loop_lag: float | None

    @property
    def done(self) -> float:
        return math.fsum(self.outcomes.values())

    @property
    def dead_letter_ratio(self) -> float | None:
        """Dead letters of what was fetched (as the alert reads it: while a
        sink is down only dead letters complete)."""
        return self.dead_letters / self.fetched if self.fetched > 0 else None


@dataclass(frozen=True, slots=True)
class InstanceView:
    """What one instance shows. `error` set: unreachable, nothing else known
    beyond the probes. `rates` None: only one scrape so far."""

    url: str
    health: Probe
    ready: Probe
    error: str | None = None
    rates: Rates | None = None
    in_flight: float | None = None
    in_flight_limit: float | None = None
    in_flight_bytes: float | None = None
    in_flight_bytes_limit: float | None = None
    paused: float | None = None
    assigned: float | None = None
    breaker_open: bool = False
    lag: float | None = None
    max_lag_seconds: float | None = None
    partitions: tuple[PartitionRow, ...] = ()
    #: Dead letters by reason over the last `REASONS_WINDOW` seconds (or since
    #: the first scrape, when shorter).
    dead_letter_reasons: Mapping[str, float] | None = None
    #: The seconds those reasons were counted over.
    reasons_over: float | None = None
    #: Counted since the process started: each outcome, and `fetched`.
    totals: Mapping[str, float] | None = None


def rates(prev: Scrape, cur: Scrape) -> Rates | None:
    """Rates between two scrapes of one instance; None if not in time order."""
    elapsed = cur.at - prev.at
    if elapsed <= 0:
        return None

    def per_s(name: str, **match: str) -> float:
        return increase(prev, cur, name, **match) / elapsed

    return Rates(
        outcomes={o: per_s(MESSAGES, outcome=o) for o in OUTCOMES},
        fetched=per_s(FETCHED), dead_letters=per_s(DLQ), retries=per_s(RETRIES),
        committed=advanced(prev, cur, COMMITTED) / elapsed, rows_written=per_s(ROWS_WRITTEN),
        sink_errors=per_s(SINK_ERRORS),
        commit_failures=per_s(COMMIT_FAILURES), dlq_send_failures=per_s(DLQ_SEND_FAILURES),
        p99_processing=quantile(0.99, bucket_increases(prev, cur, PROCESSING_BUCKETS)),
        p99_flush=quantile(0.99, bucket_increases(prev, cur, FLUSH_BUCKETS)),
        p99_loop_lag=quantile(0.99, bucket_increases(prev, cur, LOOP_LAG_BUCKETS)))


def partitions(url: str, cur: Scrape) -> tuple[PartitionRow, ...]:
    """One row per (topic, partition) any per-partition gauge lists."""
    by_tp: dict[tuple[str, int], dict[str, float]] = {}
    for name in PER_PARTITION:
        for labels, value in cur.series(name).items():
            tags = dict(labels)
            key = (tags.get("topic", "?"), int(tags.get("partition", "-1")))
            by_tp.setdefault(key, {})[name] = value
    rows = []
    for (topic, partition), v in sorted(by_tp.items()):
        paused, landed = v.get(PARTITION_PAUSED), v.get(LAST_COMMIT)
        rows.append(PartitionRow(
            url, topic, partition, v.get(LAG), v.get(LAG_SECONDS), v.get(COMMITTED),
            paused=None if paused is None else paused > 0,
            in_flight=v.get(PARTITION_IN_FLIGHT),
            last_commit_age=None if landed is None or cur.wall is None
            else max(0.0, cur.wall - landed)))
    return tuple(rows)


def window_start(history: Sequence[Scrape], now: float,
                 seconds: float = REASONS_WINDOW) -> Scrape | None:
    """The oldest scrape of `history` (oldest first) taken within `seconds` of `now`."""
    return next((s for s in history if now - s.at <= seconds), None)


def view(url: str, health: Probe, ready: Probe, cur: Scrape | None, *,
         prev: Scrape | None = None, window: Scrape | None = None,
         error: str | None = None) -> InstanceView:
    """The instance as of `cur` (None with `error`: /metrics did not answer);
    rates since `prev`, dead-letter reasons since `window`."""
    if cur is None:
        return InstanceView(url, health, ready, error=error or "no metrics")
    rows = partitions(url, cur)
    lags = [r.lag for r in rows if r.lag is not None]
    ages = [r.lag_seconds for r in rows if r.lag_seconds is not None]
    return InstanceView(
        url, health, ready, error=error,
        rates=rates(prev, cur) if prev is not None else None,
        in_flight=cur.total(IN_FLIGHT), in_flight_limit=cur.total(IN_FLIGHT_LIMIT),
        in_flight_bytes=cur.total(IN_FLIGHT_BYTES),
        in_flight_bytes_limit=cur.total(IN_FLIGHT_BYTES_LIMIT),
        paused=cur.total(PAUSED), assigned=cur.total(ASSIGNED),
        breaker_open=bool(cur.total(BREAKER)),
        lag=math.fsum(lags) if lags else None, max_lag_seconds=max(ages) if ages else None,
        partitions=rows,
        dead_letter_reasons=increase_by(window, cur, DLQ, "reason") if window else None,
        reasons_over=cur.at - window.at if window else None,
        totals={**{o: cur.total(MESSAGES, outcome=o) or 0.0 for o in OUTCOMES},
                "fetched": cur.total(FETCHED) or 0.0})


def busiest(views: Iterable[InstanceView], limit: int) -> list[PartitionRow]:
    """The `limit` partitions furthest behind (time lag, then count lag)."""
    rows = [row for v in views for row in v.partitions]
    rows.sort(key=lambda r: (-(r.lag_seconds or 0.0), -(r.lag or 0.0), r.instance, r.topic,
                             r.partition))
    return rows[:max(0, limit)]
