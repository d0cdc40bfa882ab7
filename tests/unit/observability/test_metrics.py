"""Pure parts of the metrics: time lag, the record-age histogram, the
oldest-undone lookup, per-partition removal, start-up label values."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from consumer.engine.flow import FlowControl
from consumer.engine.partition import PartitionState
from consumer.observability.age import AgeBuckets
from consumer.observability.metrics import AGE_BUCKETS, OUTCOMES, Metrics
from consumer.observability.partitions import PartitionGauges, time_lag
from consumer.types import TP
from tests.support.records import consumer_record


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@given(now=st.floats(0, 1e10), lag=st.integers(-5, 10**9),
       oldest=st.none() | st.floats(0, 1e10), since=st.none() | st.floats(0, 1e10))
def test_time_lag_is_never_negative_and_zero_when_caught_up(
        now: float, lag: int, oldest: float | None, since: float | None) -> None:
    seconds = time_lag(now, lag, oldest, since)
    assert seconds >= 0
    if lag <= 0:
        assert seconds == 0
    elif oldest is not None:
        assert seconds == max(0.0, now - oldest)  # a fetched record: exact


def test_time_lag_without_a_fetched_record_grows_from_when_waiting_was_seen() -> None:
    assert time_lag(100.0, 5, None, 90.0) == 10.0
    assert time_lag(100.0, 5, None, None) == 0.0


def test_oldest_undone_timestamp_follows_the_tracker() -> None:
    state = PartitionState(TP("t", 0), FlowControl(100, 10**6))
    first = [consumer_record(0, timestamp=1_000), consumer_record(1, timestamp=2_000),
             consumer_record(3, timestamp=3_000)]  # offset 2 is a gap
    second = [consumer_record(4, timestamp=4_000), consumer_record(5, timestamp=5_000)]
    state.deliver(first)
    state.deliver(second)
    assert state.oldest_undone_timestamp() == 1.0
    state.done_run((first[1],))  # out of order: 0 is still the oldest undone
    assert state.oldest_undone_timestamp() == 1.0
    state.done_run((first[0],))
    assert state.oldest_undone_timestamp() == 3.0
    state.done_run((first[2],))
    assert state.oldest_undone_timestamp() == 4.0  # in the second batch
    for r in second:
        state.done_run((r,))
    assert state.oldest_undone_timestamp() is None


def test_record_ages_are_a_cumulative_histogram() -> None:
    metrics = Metrics()
    child = metrics.record_ages.labels("t")
    for seconds in (0.001, 0.3, 0.5, 100.0, 10**6):
        child.observe(seconds)
    got = samples(metrics)
    bucket = "consumer_record_age_seconds_bucket"
    assert got[(bucket, (("le", "0.005"), ("topic", "t")))] == 1
    assert got[(bucket, (("le", "0.5"), ("topic", "t")))] == 3  # le is inclusive
    assert got[(bucket, (("le", "120.0"), ("topic", "t")))] == 4
    assert got[(bucket, (("le", "+Inf"), ("topic", "t")))] == 5
    assert got[("consumer_record_age_seconds_count", (("topic", "t"),))] == 5
    assert got[("consumer_record_age_seconds_sum", (("topic", "t"),))] == 0.801 + 100 + 10**6


def test_age_buckets_count_each_observation_once() -> None:
    child = AgeBuckets((1.0, 2.0))
    for seconds in (0.5, 1.0, 1.5, 3.0):
        child.observe(seconds)
    assert child.counts == [2, 1, 1]


@settings(max_examples=300, deadline=None)
@given(stamps=st.lists(st.one_of(st.integers(-5, 0),
                                 st.integers(1_700_000_000_000 - 200_000_000,
                                             1_700_000_000_000 + 5_000))),
       now_ms=st.integers(1_700_000_000_000 - 1_000, 1_700_000_000_000 + 1_000))
def test_ages_of_a_run_at_once_match_one_by_one(stamps: list[int], now_ms: int) -> None:
    # now sits 0.3 ms off the millisecond grid, so no age lands on a bound
    # (multiples of 5 ms) where float rounding could pick either bucket.
    now = now_ms / 1000 + 0.0003
    at_once, one_by_one = AgeBuckets(AGE_BUCKETS), AgeBuckets(AGE_BUCKETS)
    at_once.observe_stamps(list(stamps), now)
    for stamp in stamps:
        if stamp > 0:
            one_by_one.observe(now - stamp * 0.001)
    assert at_once.counts == one_by_one.counts
    assert at_once.total == pytest.approx(one_by_one.total, rel=1e-9, abs=1e-6)


PER_PARTITION = {"consumer_lag", "consumer_lag_seconds", "consumer_committed_offset",
                 "consumer_partition_paused", "consumer_partition_in_flight_messages",
                 "consumer_last_commit_timestamp_seconds"}


def test_revoked_partitions_lose_every_series() -> None:
    metrics = Metrics()
    gauges = PartitionGauges(metrics)
    for p in (0, 1):
        gauges.update(TP("t", p), high=10, base=4, oldest_timestamp=None, now=50.0)
        metrics.committed_offset.labels("t", str(p)).set(4)
        metrics.last_commit_timestamp.labels("t", str(p)).set(49.0)
    gauges.update(TP("t", 0), high=10, base=4, oldest_timestamp=None, now=53.0)
    assert samples(metrics)[("consumer_lag_seconds", (("partition", "0"), ("topic", "t")))] == 3
    assert {name for name, labels in samples(metrics)
            if ("partition", "0") in labels} == PER_PARTITION
    gauges.forget([TP("t", 0), TP("t", 7)])  # 7 was never reported: no error
    partitions = {dict(labels).get("partition") for (name, labels) in samples(metrics)
                  if name in PER_PARTITION}
    assert partitions == {"1"}


def test_paused_and_in_flight_are_set_before_lag_is_known() -> None:
    metrics = Metrics()
    gauges = PartitionGauges(metrics)
    labels = (("partition", "2"), ("topic", "t"))
    gauges.update(TP("t", 2), high=None, base=None, oldest_timestamp=None, now=1.0,
                  paused=True, in_flight=7)
    got = samples(metrics)
    assert got[("consumer_partition_paused", labels)] == 1
    assert got[("consumer_partition_in_flight_messages", labels)] == 7
    assert ("consumer_lag", labels) not in got  # no high watermark yet: no guess
    gauges.update(TP("t", 2), high=9, base=9, oldest_timestamp=None, now=2.0)
    got = samples(metrics)
    assert got[("consumer_partition_paused", labels)] == 0
    assert got[("consumer_partition_in_flight_messages", labels)] == 0
    assert got[("consumer_lag", labels)] == 0


def test_known_label_values_exist_at_start_up() -> None:
    metrics = Metrics()
    metrics.declare(topics=["a", "b"], sink="postgres", max_in_flight=7,
                    max_in_flight_bytes=4096, concurrency=3)
    got = samples(metrics)
    for topic in ("a", "b"):
        for outcome in OUTCOMES:
            assert got[("consumer_messages_total", (("outcome", outcome), ("topic", topic)))] == 0
    for retriable in ("true", "false"):
        assert got[("consumer_sink_errors_total",
                    (("retriable", retriable), ("sink", "postgres")))] == 0
    assert got[("consumer_rebalances_total", (("kind", "revoked"),))] == 0
    assert got[("consumer_in_flight_limit_messages", ())] == 7
    assert got[("consumer_in_flight_limit_bytes", ())] == 4096
    assert got[("consumer_concurrency", ())] == 3
    assert got[("consumer_dlq_breaker_open", ())] == 0
    build = [labels for (name, labels) in got if name == "consumer_build_info"]
    assert len(build) == 1
    assert {k for k, _ in build[0]} == {"version", "python", "aiokafka"}
    assert any(name == "process_resident_memory_bytes" for name, _ in got)


def test_every_metric_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[3] / "docs" / "OBSERVABILITY.md").read_text()
    documented = set(re.findall(r"^\| `(consumer_\w+)`", doc, re.MULTILINE))
    names = set()
    for family in Metrics().registry.collect():
        if family.name.startswith("consumer_"):
            names.add(f"{family.name}_total" if family.type == "counter" else family.name)
    assert names - documented == set(), "add them to the table in docs/OBSERVABILITY.md"
    assert documented - names == set(), "documented but not registered"
