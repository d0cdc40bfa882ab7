"""`helm install` on a real node: the pods run the service image and do the
main job — events in, rows out, exactly once — and serve metrics through the
Service, to the host and to other pods by name."""

from __future__ import annotations

import asyncio
import json

import pytest

from consumer.dev.kafka import LocalKafka
from consumer.dev.postgres import LocalPostgres
from tests.chart.helm import Helm
from tests.chart.node.host import NODE_NAME
from tests.chart.node.node import Node
from tests.chart.node.workload import NAME, Release, get, metric, ready, scrape
from tests.integration.pipeline.harness import (
    committed_all,
    count_rows,
    create_topics,
    produce,
    read_topic,
    stored_ids,
    wait_until,
)
from tests.integration.sinks.dbs import fresh_database

pytestmark = pytest.mark.integration

EVENTS = 3_000
INVALID_EVERY = 50


async def test_two_replicas_store_every_event_once_and_serve_metrics(
        node: Node, node_image: str, node_helm: Helm, node_kafka: LocalKafka,
        node_pg: LocalPostgres) -> None:
    topic, dlq = await create_topics(node_kafka.bootstrap, partitions=6)
    dsn = await fresh_database(node_pg.dsn, "chart")
    group = f"{topic}-group"
    release = await asyncio.to_thread(Release.install, node, node_helm, "events", {
        "replicaCount": 2, "kafka.bootstrapServers": node_kafka.bootstrap,
        "kafka.topics": [topic], "kafka.dlqTopic": dlq, "kafka.groupId": group,
        "kafka.partitions": 6, "sink.url": dsn, "shutdownTimeout": 10})
    pods = await asyncio.to_thread(release.wait_balanced, 2, 6)
    assert {p["spec"]["nodeName"] for p in pods} == {NODE_NAME}
    for pod in pods:
        (status,) = pod["status"]["containerStatuses"]
        assert status["image"].endswith(node_image)
        assert status["restartCount"] == 0

    traffic = await produce(node_kafka.bootstrap, topic, EVENTS, invalid_every=INVALID_EVERY)

    async def stored() -> bool:
        return await count_rows(dsn) >= len(traffic.valid)

    async def committed() -> bool:
        return await committed_all(node_kafka.bootstrap, group, topic)

    await wait_until(stored, 120, f"{len(traffic.valid)} rows")
    await wait_until(committed, 60, "offsets committed to the end")
    ids = await stored_ids(dsn)
    assert len(ids) == len(set(ids)) == len(traffic.valid)
    assert set(ids) == traffic.valid
    assert len(await read_topic(node_kafka.bootstrap, dlq)) == traffic.invalid

    # Both pods still Ready, never restarted, and together they handled each
    # record exactly once (no redelivery: the counters are per process).
    pods = await asyncio.to_thread(release.wait_ready, 2)
    assert all(ready(p) for p in pods)
    assert all(p["status"]["containerStatuses"][0]["restartCount"] == 0 for p in pods)
    texts = [scrape(p) for p in pods]
    assert all(texts), "every pod serves /metrics"
    handled = [metric(t or "", "consumer_messages_total", topic=topic) for t in texts]
    assert sum(handled) == EVENTS, handled
    assert all(h > 0 for h in handled), f"both pods consume: {handled}"

    # Through the Service, from the host (kube-proxy's ClusterIP) ...
    status, body = await asyncio.to_thread(get, f"http://{release.service_ip()}:8080/metrics")
    assert status == 200
    assert metric(body, "consumer_messages_total", topic=topic) > 0
    # ... and from a pod, by the Service's DNS name (CoreDNS, then kube-proxy).
    url = f"http://{NAME}.{release.ns}.svc.cluster.local:8080/metrics"
    fetch = ("import sys, urllib.request; "
             f"sys.stdout.write(urllib.request.urlopen({url!r}, timeout=5).read().decode())")
    body = await asyncio.to_thread(release.kubectl, "exec", pods[0]["metadata"]["name"], "--",
                                   "python", "-c", fetch)
    assert metric(body, "consumer_messages_total", topic=topic) > 0

    # The pod's JSON log, read through the kubelet.
    logs = await asyncio.to_thread(release.kubectl, "logs", pods[0]["metadata"]["name"])
    said = {json.loads(line)["msg"] for line in logs.splitlines() if line.startswith("{")}
    assert {"consuming", "partitions assigned"} <= said, logs[-2000:]
    await asyncio.to_thread(release.uninstall)
