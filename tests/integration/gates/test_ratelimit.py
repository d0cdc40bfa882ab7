"""The adaptive rate limiter against a real HTTP downstream of our own that
answers 429 + Retry-After for its first 2 seconds, with records from the real
broker driven through `build_processor` (the pipeline the service runs)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from consumer.config import Settings
from consumer.observability.metrics import Metrics
from consumer.pipeline import build_processor
from consumer.types import Record
from devtools.harness import read_topic
from tests.support.http import serving
from tests.support.kafka import NewTopicFactory, event_value, produce_values

pytestmark = pytest.mark.integration

RATE, BURST, EVENTS, WORKERS = 10.0, 3, 30, 6
THROTTLED_FOR = 2.0


class Downstream:
    """Records arrival times; 429 with Retry-After during its first seconds."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.ok_ids: list[str] = []
        self.throttled = 0
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        now = time.monotonic()
        self.arrivals.append(now)
        if now - self.arrivals[0] < THROTTLED_FOR:
            self.throttled += 1
            return web.Response(status=429, headers={"Retry-After": "2"})
        self.ok_ids.append((await request.json())["id"])
        return web.json_response({"ok": True})

    def max_in_window(self, width: float = 1.0) -> int:
        times = sorted(self.arrivals)
        return max((sum(1 for t in times[i:] if t < start + width)
                    for i, start in enumerate(times)), default=0)


@pytest.fixture
async def downstream() -> AsyncIterator[Downstream]:
    server = Downstream()
    app = web.Application()
    app.router.add_post("/events", server.handle)
    async with serving(app) as base:
        server.url = f"{base}/events"
        yield server


async def fetch(bootstrap: str, topic: str, count: int) -> list[Record]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        out: list[Record] = []
        async with asyncio.timeout(30):
            while len(out) < count:
                batch = await consumer.getmany(timeout_ms=500)
                out.extend(batch.get(tp, []))
        return out
    finally:
        await consumer.stop()


async def test_throttled_downstream_is_respected_and_recovers(
        kafka_bootstrap: str, new_topic: NewTopicFactory, downstream: Downstream,
        monkeypatch: pytest.MonkeyPatch) -> None:
    topic = await new_topic("gates-rate")
    dlq = await new_topic("gates-rate-dlq")
    produced = [event_value(i) for i in range(EVENTS)]
    await produce_values(kafka_bootstrap, topic, [v for _, v in produced])
    records = await fetch(kafka_bootstrap, topic, EVENTS)

    monkeypatch.setenv("GATES_DOWNSTREAM_URL", downstream.url)
    settings = Settings(bootstrap_servers=kafka_bootstrap, topics=[topic], dlq_topic=dlq,
                        handler="tests.integration.gates.handlers:call_downstream",
                        sink_url="none", rate_limit=RATE, rate_burst=BURST,
                        retry_max_attempts=10, retry_base_delay=0.05, retry_max_delay=0.5)
    metrics = Metrics()
    processor = build_processor(settings, metrics)
    await processor.start()
    done: list[int] = []
    queue: asyncio.Queue[Record] = asyncio.Queue()
    for rec in records:
        queue.put_nowait(rec)

    async def worker() -> None:
        while not queue.empty():
            await processor.process_run((queue.get_nowait(),),
                                            lambda rs: done.extend(r.offset for r in rs))

    limiter = processor.limiters.get("downstream")
    rates: list[float] = []

    async def sample_rate() -> None:
        while True:
            rates.append(limiter.bucket.current)
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample_rate())
    try:
        async with asyncio.timeout(60):
            await asyncio.gather(*(worker() for _ in range(WORKERS)))
        # Recovery is additive: rate/5 per second, back to the configured rate.
        async with asyncio.timeout(10):
            while True:
                limiter.bucket.wait_time(time.monotonic())  # brings the pure bucket to now
                if limiter.bucket.current >= RATE:
                    break
                await asyncio.sleep(0.2)
    finally:
        sampler.cancel()
        await processor.close()
    print(f"throttled={downstream.throttled} max/1s={downstream.max_in_window()} "
          f"min rate={min(rates)} span={downstream.arrivals[-1] - downstream.arrivals[0]:.1f}s")

    assert sorted(done) == [r.offset for r in records]  # every event completed
    assert sorted(downstream.ok_ids) == sorted(i for i, _ in produced)
    assert downstream.throttled >= 1
    assert downstream.max_in_window(1.0) <= RATE + BURST
    assert min(rates) <= RATE / 2  # cut multiplicatively on the 429s
    assert limiter.bucket.current == RATE  # and recovered additively
    sample = metrics.registry.get_sample_value
    assert (sample("consumer_ratelimit_throttled_total",
                   {"downstream": "downstream", "status": "429"}) or 0) >= 1
    assert (sample("consumer_ratelimit_wait_seconds_count", {"downstream": "downstream"})
            or 0) >= EVENTS
    assert await read_topic(kafka_bootstrap, dlq, idle=0.5) == []
