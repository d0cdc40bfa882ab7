"""(a) A slow handler and a small limit: partitions pause, in flight never
exceeds the limit, and they resume once the work drains."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from consumer.config import load_settings
from consumer.engine.engine import Engine
from consumer.observability.metrics import Metrics
from consumer.pipeline import build_processor
from devtools.harness import produce
from tests.integration.engine.support import read_handled
from tests.support.kafka import NewTopicFactory

pytestmark = pytest.mark.integration

LIMIT = 24
COUNT = 600


async def test_slow_handler_pauses_partitions_within_the_limit_then_resumes(
    kafka_bootstrap: str, new_topic: NewTopicFactory, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    topic = await new_topic("backpressure", partitions=6)
    sent = (await produce(kafka_bootstrap, topic, COUNT, keys=60)).placed
    handled_file = tmp_path / "handled.txt"
    monkeypatch.setenv("TEST_HANDLED_FILE", str(handled_file))
    monkeypatch.setenv("TEST_HANDLER_SLEEP", "0.01")
    settings = load_settings(
        bootstrap_servers=kafka_bootstrap, topics=[topic], group_id=f"g-{topic}",
        handler="tests.integration.engine.handlers:record", sink_url="none",
        max_in_flight=LIMIT, concurrency=4, ordering="key", commit_interval=0.2,
    )
    metrics = Metrics()
    processor = build_processor(settings, metrics)
    start = getattr(processor, "start", None)  # the pipeline opens its sink and producer
    if start is not None:
        await start()
    engine = Engine(settings, processor, metrics)
    task = asyncio.create_task(engine.run())
    peak = 0
    paused_seen: set[int] = set()
    paused_metric_seen = 0.0
    try:
        async with asyncio.timeout(120):
            while len(read_handled(handled_file)) < COUNT:
                assert not task.done(), "the engine stopped early"
                peak = max(peak, engine.in_flight)
                paused_seen |= {tp.partition for tp in engine.paused()}
                text = metrics.registry.get_sample_value("consumer_paused_partitions") or 0.0
                paused_metric_seen = max(paused_metric_seen, text)
                await asyncio.sleep(0.002)
            # Drained: everything resumes.
            while engine.paused() or engine.in_flight:  # noqa: ASYNC110 - polling the engine
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.6)  # one metrics refresh
    finally:
        engine.request_stop()
        code = await task
    assert code == 0
    assert 0 < peak <= LIMIT
    assert paused_seen, "the consumer paused partitions while over the limit"
    assert paused_metric_seen >= 1
    assert metrics.registry.get_sample_value("consumer_paused_partitions") == 0
    handled = {(h.partition, h.offset) for h in read_handled(handled_file)}
    assert handled == sent
    exposition = metrics.registry.get_sample_value("consumer_in_flight_messages")
    assert exposition == 0
    assert re.search(r"consumer_in_flight_bytes", _exposition(metrics))


def _exposition(metrics: Metrics) -> str:
    from prometheus_client import generate_latest

    return generate_latest(metrics.registry).decode()
