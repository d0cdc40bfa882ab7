"""The loop-lag monitor sees a stretch of synchronous work."""

from __future__ import annotations

import asyncio
import time

from consumer.observability.loop import LoopLagMonitor
from consumer.observability.metrics import Metrics


async def test_a_blocked_loop_shows_up_as_lag() -> None:
    metrics = Metrics()
    monitor = LoopLagMonitor(metrics.event_loop_lag, interval=0.01)
    await monitor.start()
    await asyncio.sleep(0.05)
    time.sleep(0.3)  # noqa: ASYNC251 - the point: hold the loop
    await asyncio.sleep(0.05)
    await monitor.close()
    await monitor.close()  # idempotent

    def sample(name: str, **labels: str) -> float:
        value = metrics.registry.get_sample_value(name, labels)
        assert value is not None
        return value

    assert sample("consumer_event_loop_lag_seconds_count") >= 3
    # The blocked stretch lands in a bucket above 250 ms, and nowhere below.
    assert sample("consumer_event_loop_lag_seconds_bucket", le="0.1") < sample(
        "consumer_event_loop_lag_seconds_count")
    assert sample("consumer_event_loop_lag_seconds_sum") >= 0.25
