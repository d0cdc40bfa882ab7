"""The shipped dashboard and alert rules against a real Prometheus scraping the
real service: every panel's every query returns data, every rule evaluates
with health ok, and tripping the dead-letter breaker raises its alert.

Workload: valid events, invalid ones (dead-lettered), ones that fail their
first attempt (retried), all through a rate-limited downstream of our own
that answers 429 now and then, stored in SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import math
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer

from devtools.harness import Service, create_topics, wait_until
from devtools.prometheus import LocalPrometheus
from schemas.samples import invalid_samples, sample_event
from tests.dashboard_queries import ALERTS, load, queries
from tests.support.http import serving

pytestmark = pytest.mark.integration

THROTTLE_EVERY = 25  # the downstream answers 429 to one request in this many
CATCH_UP = "Catch-up time estimate"
BREAKER_RUN = 40  # consecutive dead letters that trip the breaker


class Downstream:
    def __init__(self) -> None:
        self.requests = 0
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.requests % THROTTLE_EVERY == 0:
            return web.Response(status=429, headers={"Retry-After": "0.2"})
        return web.json_response({"ok": True})


@pytest.fixture
async def downstream() -> AsyncIterator[Downstream]:
    server = Downstream()
    app = web.Application()
    app.router.add_post("/", server.handle)
    async with serving(app, access_log=None) as base:
        server.url = f"{base}/"
        yield server


async def produce_mix(bootstrap: str, topic: str, stop: asyncio.Event,
                      rate: float = 60.0) -> int:
    """Until `stop`: one in 10 invalid, one in 7 failing its first attempt.
    Open-ended, for as long as the dashboard is watched, where
    `devtools.harness.produce` sends a fixed count and has no retried ids."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    invalid = itertools.cycle([v for _, v in invalid_samples()])
    sent = 0
    try:
        for n in itertools.count():
            if stop.is_set():
                break
            if n % 10 == 9:
                value = next(invalid)
            else:
                event = sample_event(n)
                if n % 7 == 6:
                    event["id"] = f"transient-{event['id']}"
                value = orjson.dumps(event)
            await producer.send(topic, value, key=f"k{n % 13}".encode())
            sent += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1 / rate)
    finally:
        await producer.stop()
    return sent


def has_data(result: list[dict[str, Any]]) -> bool:
    """Some series has a number (not NaN) somewhere in the range."""
    return any(not math.isnan(float(v)) for series in result for _, v in series["values"])


async def test_dashboard_and_rules_against_real_prometheus(
        kafka_bootstrap: str, downstream: Downstream, tmp_path: Path) -> None:
    topic, dlq = await create_topics(kafka_bootstrap, partitions=3)
    svc = Service(bootstrap_servers=kafka_bootstrap, topics=topic, dlq_topic=dlq,
                  group_id=f"live-{uuid.uuid4().hex[:8]}",
                  sink_url=f"sqlite:///{tmp_path / 'live.db'}",
                  handler="tests.integration.observability.handlers:live",
                  rate_limit="100", rate_burst="10", retry_base_delay="0.01",
                  retry_max_delay="0.1", commit_interval="0.5", batch_max_latency="0.1",
                  dlq_breaker_ratio="1.0", dlq_breaker_consecutive=str(BREAKER_RUN),
                  metrics_linger="6", log_level="INFO")
    svc.env["LIVE_DOWNSTREAM_URL"] = downstream.url
    svc.start()
    target = f"127.0.0.1:{svc.env['CONSUMER_HTTP_PORT']}"
    prom = LocalPrometheus(targets=[target], rule_files=[ALERTS])
    stop = asyncio.Event()
    producer: asyncio.Task[int] | None = None
    try:
        await asyncio.to_thread(prom.start)

        async def query(expr: str) -> list[dict[str, Any]]:
            data = await asyncio.to_thread(prom.api, "query", query=expr)
            result: list[dict[str, Any]] = data["result"]
            return result

        def state() -> str:
            return f"service log:\n{svc.log_tail()}\nprometheus log:\n{prom.log()}"

        async def positive(expr: str) -> bool:
            return bool(await query(f"({expr}) > 0"))

        producer = asyncio.create_task(produce_mix(kafka_bootstrap, topic, stop))
        for expr in ('sum(consumer_messages_total{outcome="ok"})',
                     'sum(consumer_messages_total{outcome="invalid"})',
                     "sum(consumer_retries_total)",
                     "sum(consumer_ratelimit_throttled_total)",
                     "sum(consumer_sink_rows_written_total)",
                     "count(consumer_committed_offset)"):
            await wait_until(functools.partial(positive, expr), 90, expr, detail=state)
        await asyncio.sleep(8)  # a few rate windows of traffic in the database

        # Every query of every panel, as Grafana would send it (a range query).
        end = time.time()
        checked, empty = 0, []
        catch_up = []
        for q in queries(load()):
            if q.panel == CATCH_UP:  # no value while lag grows: checked once it shrinks
                catch_up.append(q.expr)
                continue
            data = await asyncio.to_thread(prom.api, "query_range", query=q.expr,
                                           start=str(end - 60), end=str(end), step="1")
            checked += 1
            if not has_data(data["result"]):
                empty.append(f"{q.panel} [{q.ref}]: {q.expr}")
        print(f"\nlive: {checked} panel queries checked, {len(empty)} without data")
        assert not empty, "queries without data:\n" + "\n".join(empty)

        # Every rule evaluated, with health ok.
        async def all_rules_evaluated() -> bool:
            groups = (await asyncio.to_thread(prom.api, "rules"))["groups"]
            rules = [r for g in groups for r in g["rules"]]
            return bool(rules) and all(r["health"] != "unknown" for r in rules)

        await wait_until(all_rules_evaluated, 30, "every rule evaluated", detail=state)
        rules = [r for g in (await asyncio.to_thread(prom.api, "rules"))["groups"]
                 for r in g["rules"]]
        bad = [(r["name"], r["health"], r.get("lastError")) for r in rules
               if r["health"] != "ok"]
        print(f"live: {len(rules)} rules loaded, {len(rules) - len(bad)} health ok")
        assert not bad
        assert len(rules) >= 13

        # Trip the breaker: a run of invalid records once the rest is done.
        stop.set()
        await producer
        async def idle() -> bool:
            result = await query("sum(consumer_in_flight_messages)")
            return bool(result) and float(result[0]["value"][1]) == 0

        await wait_until(idle, 60, "the service idle", detail=state)

        async def has_value(expr: str) -> bool:
            return bool(await query(expr))

        assert catch_up, f"no {CATCH_UP!r} panel"
        for expr in catch_up:  # lag worked off: it shrinks, so the estimate has a value
            await wait_until(functools.partial(has_value, expr), 120, expr, detail=state)
        flood = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await flood.start()
        try:
            for _ in range(BREAKER_RUN + 20):
                await flood.send(topic, b"not an event")
            await flood.flush()
        finally:
            await flood.stop()
        alert = 'ALERTS{alertname="ConsumerDLQBreakerOpen", alertstate="firing"}'
        await wait_until(lambda: positive(f"count({alert})"), 60, alert, detail=state)
        fired = await query(alert)
        print(f"live: {alert} -> {[s['metric'] for s in fired]}")
        assert svc.proc is not None
        code = await asyncio.to_thread(svc.proc.wait, 60)
        assert code == 1, svc.log_tail()
        assert "dead-letter circuit breaker OPEN" in svc.log_tail(200_000)
    finally:
        stop.set()
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer
        if svc.alive:
            svc.kill()
        await asyncio.to_thread(prom.stop)
