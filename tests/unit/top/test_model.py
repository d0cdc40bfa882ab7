"""The pure core of `consumer top`: parsing the service's own /metrics text,
counter increases across resets and restarts, the histogram quantile, and
the names it reads (registered by the service, so a rename cannot blank it)."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import generate_latest

from consumer.observability.metrics import Metrics
from consumer.top import model
from consumer.top.model import Probe, Scrape, counter_increase, quantile

OK = Probe(200, '{"ok": true}')


def exposed_names(metrics: Metrics) -> set[str]:
    """Every sample name the registry can show, labelled series or not."""
    names: set[str] = set()
    for family in metrics.registry.collect():
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
    return names


def scrape(metrics: Metrics, at: float) -> Scrape:
    return model.parse(generate_latest(metrics.registry).decode(), at)


def test_every_name_read_is_registered_by_the_service() -> None:
    missing = set(model.READS) - exposed_names(Metrics())
    assert not missing, f"the view reads metrics the service does not register: {missing}"


def test_view_of_two_scrapes_of_the_service_registry() -> None:
    m = Metrics()
    m.declare(topics=["a", "b"], sink="none", max_in_flight=1000,
              max_in_flight_bytes=2**20, concurrency=4)
    m.committed_offset.labels("a", "0").set(60)
    first = scrape(m, at=10.0)
    m.messages.labels("a", "ok").inc(30)
    m.messages.labels("b", "ok").inc(10)
    m.messages.labels("a", "invalid").inc(2)
    m.dlq_messages.labels("a", "Boom").inc(4)  # a label value new since the first scrape
    m.fetched.labels("a").inc(44)
    m.in_flight_messages.set(7)
    m.paused_partitions.set(1)
    m.assigned_partitions.set(3)
    m.lag.labels("a", "0").set(12)
    m.lag.labels("a", "1").set(3)
    m.lag_seconds.labels("a", "0").set(4.5)
    m.committed_offset.labels("a", "0").set(100)
    m.sink_rows_written.labels("none").inc(40)
    for _ in range(99):
        m.processing_seconds.labels("a").observe(0.003)
    m.processing_seconds.labels("b").observe(20)
    v = model.view("http://x", OK, OK, scrape(m, at=12.0), prev=first, window=first)

    assert v.rates is not None
    assert v.rates.outcomes == {"ok": 20.0, "dead_lettered": 0.0, "invalid": 1.0}
    assert v.rates.done == 21.0
    assert v.rates.dead_letters == 2.0
    assert v.rates.fetched == 22.0
    assert v.rates.dead_letter_ratio == 2.0 / 22.0
    assert v.rates.committed == 20.0  # partition 0 moved 60 -> 100; 1 is new: not counted
    assert v.rates.rows_written == 20.0
    assert v.dead_letter_reasons == {"Boom": 4.0}  # reasons that did not move left out
    assert v.reasons_over == 2.0
    assert v.rates.p99_processing is not None
    assert 0.0025 <= v.rates.p99_processing <= 0.005
    assert (v.in_flight, v.in_flight_limit, v.paused, v.assigned) == (7, 1000, 1, 3)
    assert v.in_flight_bytes_limit == 2**20
    assert v.lag == 15
    assert v.totals == {"ok": 40.0, "dead_lettered": 0.0, "invalid": 2.0, "fetched": 44.0}
    assert v.max_lag_seconds == 4.5
    assert not v.breaker_open
    assert [(r.topic, r.partition, r.lag, r.lag_seconds, r.committed)
            for r in v.partitions] == [("a", 0, 12, 4.5, 100), ("a", 1, 3, None, None)]


def test_partition_rows_show_paused_in_flight_and_the_last_commit_age() -> None:
    m = Metrics()
    m.lag.labels("a", "0").set(5)
    m.partition_paused.labels("a", "0").set(1)
    m.partition_in_flight.labels("a", "0").set(40)
    m.last_commit_timestamp.labels("a", "0").set(1_000.0)
    m.partition_paused.labels("a", "1").set(0)
    m.last_commit_timestamp.labels("a", "1").set(1_000.5)  # a clock ahead of ours: 0, not -
    text = generate_latest(m.registry).decode()
    rows = model.view("http://x", OK, OK, model.parse(text, 1.0, wall=1_000.25)).partitions
    assert [(r.partition, r.paused, r.in_flight, r.last_commit_age) for r in rows] == [
        (0, True, 40, 0.25), (1, False, None, 0.0)]
    unknown = model.view("http://x", OK, OK, model.parse(text, 1.0)).partitions
    assert [r.last_commit_age for r in unknown] == [None, None]  # no wall clock: no age


@pytest.mark.parametrize(("body", "reasons", "draining"), [
    ('{"ok": true, "reasons": []}', (), False),
    ('{"ok": false, "reasons": ["draining: stopping, 3 message(s) in flight", "sink x"]}',
     ("draining: stopping, 3 message(s) in flight", "sink x"), True),
    ('{"ok": false, "reasons": ["starting: not consuming yet"]}',
     ("starting: not consuming yet",), False),
    ("not json", (), False), ('["a list"]', (), False), ('{"reasons": "one"}', (), False)])
def test_readiness_reasons_and_draining(body: str, reasons: tuple[str, ...],
                                        draining: bool) -> None:
    probe = Probe(503, body)
    assert (probe.reasons, probe.draining) == (reasons, draining)


# What /metrics answered before and after a restart that lost a family (the
# sink's, not yet written) and reset the counters.
BEFORE = """\
# TYPE process_start_time_seconds gauge
process_start_time_seconds 1000.0
# TYPE consumer_messages counter
consumer_messages_total{topic="t",outcome="ok"} 900.0
consumer_messages_total{topic="t",outcome="invalid"} 10.0
# TYPE consumer_sink_rows_written counter
consumer_sink_rows_written_total{sink="sqlite"} 900.0
# TYPE consumer_lag gauge
consumer_lag{topic="t",partition="0"} 5.0
"""
AFTER = """\
# TYPE process_start_time_seconds gauge
process_start_time_seconds 1500.0
# TYPE consumer_messages counter
consumer_messages_total{topic="t",outcome="ok"} 30.0
consumer_messages_total{topic="t",outcome="invalid"} 12.0
# TYPE consumer_lag gauge
consumer_lag{topic="t",partition="0"} 2.0
"""


def test_captured_text_across_a_restart_and_a_missing_family() -> None:
    v = model.view("http://x", OK, OK, model.parse(AFTER, 20.0),
                   prev=model.parse(BEFORE, 10.0))
    assert v.rates is not None
    # Both counted from 0 after the restart, although "invalid" rose past its old value.
    assert v.rates.outcomes == {"ok": 3.0, "dead_lettered": 0.0, "invalid": 1.2}
    assert v.rates.rows_written == 0.0  # the family is gone: nothing counted, no error
    assert v.rates.p99_processing is None  # and no histogram at all: unknown, not 0
    assert v.in_flight is None
    assert v.lag == 2.0


def test_one_scrape_has_no_rates_and_no_scrape_is_an_error() -> None:
    m = Metrics()
    assert model.view("http://x", OK, OK, scrape(m, 1.0)).rates is None
    down = model.view("http://x", Probe(None, error="unreachable"),
                      Probe(None, error="unreachable"), None, error="unreachable")
    assert down.error == "unreachable"
    assert down.partitions == ()


def test_scrapes_out_of_time_order_have_no_rates() -> None:
    m = Metrics()
    assert model.rates(scrape(m, 5.0), scrape(m, 5.0)) is None


def test_a_restart_counts_every_series_from_zero() -> None:
    # The counter went past its old value after the restart: only the start time tells.
    before = Scrape(0.0, {model.STARTED: {frozenset(): 100.0},
                          model.MESSAGES: {frozenset({("outcome", "ok")}): 5.0}})
    after = Scrape(1.0, {model.STARTED: {frozenset(): 200.0},
                         model.MESSAGES: {frozenset({("outcome", "ok")}): 8.0}})
    assert model.increase(before, after, model.MESSAGES) == 8.0
    same = Scrape(1.0, {**after.samples, model.STARTED: {frozenset(): 100.0}})
    assert model.increase(before, same, model.MESSAGES) == 3.0


# One counter's life: increments, restarts (the process starts over) and scrapes.
steps = st.lists(st.one_of(st.tuples(st.just("inc"), st.integers(1, 1000)),
                           st.tuples(st.just("restart"), st.just(0)),
                           st.tuples(st.just("scrape"), st.just(0))), max_size=60)


@given(steps)
def test_increases_add_up_to_what_was_counted_between_scrapes(
        life: list[tuple[str, int]]) -> None:
    """Summed over consecutive scrapes, the increases are exactly what was
    counted after the first scrape, less what a restart lost (counted since
    the last scrape before it): the most any scraper can know."""
    value, started, pending = 0.0, 0.0, 0.0
    scrapes: list[Scrape] = []
    expected = 0.0
    for kind, n in life:
        if kind == "inc":
            value += n
            pending += n
        elif kind == "restart":
            value, started, pending = 0.0, started + 1, 0.0
        else:
            if scrapes:
                expected += pending
            pending = 0.0
            scrapes.append(Scrape(float(len(scrapes)), {
                model.STARTED: {frozenset(): started},
                model.MESSAGES: {frozenset(): value}}))
    measured = sum(model.increase(a, b, model.MESSAGES) for a, b in pairwise(scrapes))
    assert measured == expected


@given(st.none() | st.floats(0, 1e12), st.floats(0, 1e12), st.booleans())
def test_an_increase_is_never_negative(before: float | None, after: float,
                                       restarted: bool) -> None:
    assert counter_increase(before, after, restarted=restarted) >= 0


def test_quantile_interpolates_like_prometheus() -> None:
    buckets = {0.1: 50.0, 0.5: 90.0, 1.0: 100.0, math.inf: 100.0}
    assert quantile(0.5, buckets) == 0.1
    assert quantile(0.7, buckets) == pytest.approx(0.3)  # 0.1 + 0.4 * 20 / 40
    assert quantile(0.99, {0.1: 0.0, 1.0: 0.0, math.inf: 10.0}) == 1.0  # in +Inf: top bound
    assert quantile(0.99, {0.1: 0.0, math.inf: 0.0}) is None
    assert quantile(0.99, {}) is None


cumulative = st.lists(st.floats(0, 1e6), min_size=1, max_size=12)


@given(cumulative, st.floats(0, 1), st.floats(0, 1))
def test_quantile_stays_within_the_bounds_and_grows_with_q(
        counts: list[float], q1: float, q2: float) -> None:
    bounds = [0.001 * 2**i for i in range(len(counts) - 1)] + [math.inf]
    buckets = dict(zip(bounds, counts, strict=True))  # need not be monotonic: a reset
    low, high = quantile(min(q1, q2), buckets), quantile(max(q1, q2), buckets)
    if low is None or high is None:
        assert low is high is None
        return
    top = bounds[-2] if len(bounds) > 1 else 0.0
    assert 0.0 <= low <= high + 1e-9
    assert high <= top


def test_busiest_puts_the_furthest_behind_first() -> None:
    row = model.PartitionRow
    a = model.InstanceView("a", OK, OK, partitions=(row("a", "t", 0, 5, 1.0, 0),
                                                    row("a", "t", 1, 900, 0.5, 0)))
    b = model.InstanceView("b", OK, OK, partitions=(row("b", "t", 2, 10, 30.0, 0),))
    assert [(r.instance, r.partition) for r in model.busiest([a, b], 2)] == [("b", 2),
                                                                            ("a", 0)]


def test_window_start_is_the_oldest_scrape_within_the_window() -> None:
    history = [Scrape(float(at), {}) for at in (0, 30, 50, 90)]
    start = model.window_start(history, now=100.0)
    assert start is not None
    assert start.at == 50.0
    assert model.window_start(history, now=1000.0) is None
