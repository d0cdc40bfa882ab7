"""`helm install` on a real node: the pods run the service image and do the
main job — events in, rows out, exactly once — and serve metrics through the
Service, to the host and to other pods by name."""

from __future__ import annotations

import asyncio
import json

import pytest

from devtools.harness import (
    produce,
    read_topic,
)
from devtools.kafka import LocalKafka
from devtools.postgres import LocalPostgres
from devtools.prometheus import LocalPrometheus
from tests.chart.helm import Helm
from tests.chart.kube import wait_for
from tests.chart.node.flow import all_stored_once, deploy
from tests.chart.node.host import NODE_NAME
from tests.chart.node.node import Node
from tests.chart.node.workload import NAME, metric, ready, scrape

# The first node test also waits for the session's fixtures: the node, and the
# service image when the Docker layer cache is cold (a rebuild takes minutes).
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

EVENTS = 3_000
INVALID_EVERY = 50


async def test_two_replicas_store_every_event_once_and_serve_metrics(
        node: Node, node_image: str, node_helm: Helm, node_kafka: LocalKafka,
        node_pg: LocalPostgres) -> None:
    run = await deploy(node, node_helm, node_kafka, node_pg, ns="events", replicas=2)
    release, topic = run.release, run.topic
    pods = release.pods()
    assert {p["spec"]["nodeName"] for p in pods} == {NODE_NAME}
    for pod in pods:
        (status,) = pod["status"]["containerStatuses"]
        assert status["image"].endswith(node_image)
        assert status["restartCount"] == 0

    traffic = await produce(node_kafka.bootstrap, topic, EVENTS, invalid_every=INVALID_EVERY)

    await all_stored_once(node_kafka, run, traffic)
    assert len(await read_topic(node_kafka.bootstrap, run.dlq)) == traffic.invalid

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

    # Through the Service: a real Prometheus on the host scrapes the
    # ClusterIP (kube-proxy's rules pick a pod) ...
    prometheus = LocalPrometheus(targets=[f"{release.service_ip()}:8080"])
    await asyncio.to_thread(prometheus.start)
    try:
        def scraped() -> bool:
            up = prometheus.api("query", query='up{job="consumer"}')["result"]
            seen = prometheus.api(
                "query", query=f'consumer_messages_total{{topic="{topic}"}}')["result"]
            return bool(up) and up[0]["value"][1] == "1" and bool(seen)

        await asyncio.to_thread(wait_for, scraped, 60, "Prometheus scraping the Service")
    finally:
        await asyncio.to_thread(prometheus.stop)
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
