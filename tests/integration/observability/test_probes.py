"""Probes that tell the truth: `/readyz` is 503, with the reason, while the
sink cannot write; `/healthz` stays about the process (a database outage
must not make the kubelet restart the pod); both recover by themselves."""

from __future__ import annotations

import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web

from devtools.harness import (
    Service,
    committed_all,
    create_topics,
    produce,
    wait_until,
)
from tests.support.http import serving

pytestmark = pytest.mark.integration


@dataclass
class Downstream:
    """An HTTP endpoint the sink posts to; `down` makes it answer 503."""

    url: str = ""
    down: bool = False
    stored: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
async def downstream() -> AsyncIterator[Downstream]:
    state = Downstream()

    async def ingest(request: web.Request) -> web.Response:
        if state.down:
            return web.Response(status=503, text="maintenance")
        state.stored.extend(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/ingest", ingest)
    async with serving(app) as base:
        state.url = f"{base}/ingest"
        yield state


def probe(service: Service, path: str) -> tuple[int, dict[str, Any]]:
    url = f"http://127.0.0.1:{service.env['CONSUMER_HTTP_PORT']}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, orjson.loads(err.read())


async def test_readiness_follows_the_sink_and_liveness_does_not(
        kafka_bootstrap: str, downstream: Downstream) -> None:
    topic, dlq = await create_topics(kafka_bootstrap, partitions=2)
    service = Service(bootstrap_servers=kafka_bootstrap, topics=topic, dlq_topic=dlq,
                      sink_url=downstream.url, group_id=f"g-{uuid.uuid4().hex[:8]}",
                      sink_retry_max_delay="0.5").start()
    try:
        await wait_until(lambda: probe(service, "/readyz")[0] == 200, 60, "ready", service)
        assert probe(service, "/readyz")[1] == {"ok": True, "reasons": []}

        downstream.down = True
        first = await produce(kafka_bootstrap, topic, 20)

        def unready() -> bool:
            return probe(service, "/readyz")[0] == 503

        await wait_until(unready, 60, "/readyz to report the failing sink", service)
        _, body = probe(service, "/readyz")
        assert body["ok"] is False
        assert any("sink http" in reason for reason in body["reasons"]), body
        assert probe(service, "/healthz") == (200, {"ok": True})
        assert downstream.stored == []

        downstream.down = False
        await wait_until(lambda: probe(service, "/readyz")[0] == 200, 60,
                         "/readyz to recover", service)
        group = service.env["CONSUMER_GROUP_ID"]

        await wait_until(lambda: committed_all(kafka_bootstrap, group, topic), 60,
                         "the events written and committed", service)
    finally:
        code = service.terminate()
    assert code == 0, service.log_tail()
    assert {row["id"] for row in downstream.stored} == first.valid
