"""Per-partition gauges: `consumer_lag`, `consumer_lag_seconds`,
`consumer_partition_paused`, `consumer_partition_in_flight_messages`, and the
removal of every per-partition series when a partition is revoked (those the
committer sets too: `consumer_committed_offset`,
`consumer_last_commit_timestamp_seconds`).

Fed by the engine's metrics routine (every 0.5 s), never per message. Time
lag is the age of the oldest record not yet done:

- caught up (lag 0): 0;
- a fetched record not yet done: now - its broker timestamp (exact);
- lag but nothing fetched (paused at the global limit, or before the first
  fetch after an assignment): the oldest unconsumed record is at least as old
  as the time this member has been seeing the partition wait, so that is the
  answer — a lower bound that grows with the wall clock, never a guess from
  an older record (a partition quiet for an hour that just got one record
  would otherwise read an hour).
"""

from __future__ import annotations

from collections.abc import Iterable

from consumer.observability.metrics import Metrics
from consumer.types import TP


def time_lag(now: float, lag: int, oldest_timestamp: float | None,
             waiting_since: float | None) -> float:
    """Seconds behind (see the module docstring). `oldest_timestamp` is the
    broker timestamp (s) of the oldest fetched record not yet done."""
    if lag <= 0:
        return 0.0
    if oldest_timestamp is not None:
        return max(0.0, now - oldest_timestamp)
    if waiting_since is not None:
        return max(0.0, now - waiting_since)
    return 0.0


class PartitionGauges:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        #: When each partition was first seen with lag and nothing fetched.
        self._waiting_since: dict[TP, float] = {}

    def update(self, tp: TP, *, high: int | None, base: int | None,
               oldest_timestamp: float | None, now: float, paused: bool = False,
               in_flight: int = 0) -> None:
        """`high`: the high watermark; `base`: the committable offset (or the
        last committed); `now`: wall-clock seconds; `paused` by flow control;
        `in_flight`: its messages fetched and not yet done. Lag waits for
        `high` and `base`; the others are set at once."""
        labels = (tp.topic, str(tp.partition))
        self._metrics.partition_paused.labels(*labels).set(1 if paused else 0)
        self._metrics.partition_in_flight.labels(*labels).set(in_flight)
        if high is None or base is None:
            return
        lag = max(0, high - base)
        if lag == 0 or oldest_timestamp is not None:
            self._waiting_since.pop(tp, None)
            since = None
        else:
            since = self._waiting_since.setdefault(tp, now)
        self._metrics.lag.labels(*labels).set(lag)
        self._metrics.lag_seconds.labels(*labels).set(
            time_lag(now, lag, oldest_timestamp, since))

    def forget(self, tps: Iterable[TP]) -> None:
        """Remove every per-partition series of `tps` (revoked: no longer ours)."""
        m = self._metrics
        for tp in tps:
            self._waiting_since.pop(tp, None)
            labels = (tp.topic, str(tp.partition))
            for gauge in (m.lag, m.lag_seconds, m.committed_offset, m.partition_paused,
                          m.partition_in_flight, m.last_commit_timestamp):
                gauge.remove(*labels)  # a no-op where never set
