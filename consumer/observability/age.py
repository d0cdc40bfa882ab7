"""`consumer_record_age_seconds`: a histogram observed once per done record,
so it is kept as cheap as a histogram can be.

prometheus-client's `Histogram.observe` walks the buckets in Python and takes
a lock per increment (~1.5 µs); here an observation is one `bisect` and two
additions on plain lists (~0.25 µs with the clock read), which is safe because every observation
and every scrape run on the event loop's thread. The collector turns the
counts into a normal cumulative histogram when /metrics is read.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence
from math import ceil

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector


class AgeBuckets:
    """One label set's counts. `observe_stamps` is the hot-path call (once
    per completed run); `observe` is the same for one age."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(map(float, bounds))
        self.counts = [0] * (len(bounds) + 1)  # the last is +Inf
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        # bisect_left: the first bound >= seconds, as Prometheus' `le` means.
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def observe_stamps(self, stamps: list[int], now: float) -> None:
        """`observe(now - stamp / 1000)` for each broker timestamp (ms) of a
        run, skipping those <= 0 (no usable time). Sorted (in C; a run's
        stamps are nearly in order already), the youngest and the oldest give
        the buckets the run spans — usually one — and each bound between
        them one bisect: an age is <= a bound exactly when its stamp is >=
        now minus the bound. `stamps` is sorted in place."""
        stamps.sort()
        start = bisect_right(stamps, 0)
        count = len(stamps) - start
        if not count:
            return
        bounds, counts = self.bounds, self.counts
        first = bisect_left(bounds, now - stamps[-1] * 0.001)  # the youngest's bucket
        last = bisect_left(bounds, now - stamps[start] * 0.001)  # the oldest's
        at_most = 0  # stamps whose age is <= the previous bound
        now_ms = now * 1000
        for i in range(first, last):
            # The first whole millisecond at or after now - bound: comparing
            # ints with ints is several times faster than ints with floats.
            within = len(stamps) - bisect_left(stamps, ceil(now_ms - bounds[i] * 1000), start)
            counts[i] += within - at_most
            at_most = within
        counts[last] += count - at_most
        self.total += count * now - sum(stamps[start:]) * 0.001


class RecordAges(Collector):
    """A histogram family labelled by topic; register it once per registry."""

    def __init__(self, name: str, documentation: str, buckets: Sequence[float],
                 registry: CollectorRegistry | None = None) -> None:
        self._name = name
        self._doc = documentation
        self._bounds = tuple(sorted(buckets))
        self._children: dict[str, AgeBuckets] = {}
        if registry is not None:
            registry.register(self)

    def labels(self, topic: str) -> AgeBuckets:
        child = self._children.get(topic)
        if child is None:
            child = self._children[topic] = AgeBuckets(self._bounds)
        return child

    def describe(self) -> list[Metric]:
        return [HistogramMetricFamily(self._name, self._doc, labels=["topic"])]

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self._name, self._doc, labels=["topic"])
        for topic, child in sorted(self._children.items()):
            cumulative, buckets = 0, []
            for bound, count in zip((*self._bounds, float("inf")), child.counts, strict=True):
                cumulative += count
                buckets.append((_le(bound), cumulative))
            family.add_metric([topic], buckets, child.total)
        yield family


def _le(bound: float) -> str:
    if bound == float("inf"):
        return "+Inf"
    return repr(float(bound))
