"""What users do to a running release, done while events flow: `helm upgrade`
with a changed setting (a rolling update), `kubectl scale` from 3 to 1, and
`kubectl delete pod` of a busy pod. Every replaced pod must drain within its
grace period (exit 0, no SIGKILL) and every event must end up as one row."""

from __future__ import annotations

import asyncio

import pytest

from devtools.harness import produce, wait_until
from devtools.kafka import LocalKafka
from devtools.postgres import LocalPostgres
from tests.chart.helm import Helm
from tests.chart.node.flow import all_stored_once, deploy, drained_in_grace, figures
from tests.chart.node.node import Node
from tests.chart.node.workload import NAME, PodWatch, metric, scrape

pytestmark = pytest.mark.integration


async def test_helm_upgrade_rolls_under_flow_without_loss(
        node: Node, node_image: str, node_helm: Helm, node_kafka: LocalKafka,
        node_pg: LocalPostgres) -> None:
    run = await deploy(node, node_helm, node_kafka, node_pg, ns="upgrade", replicas=2)
    release = run.release
    watch = PodWatch(node.kube, release.ns).start()
    old = {p["metadata"]["uid"] for p in release.pods()}
    flow = asyncio.create_task(produce(node_kafka.bootstrap, run.topic, 6_000, rate=200))
    await asyncio.sleep(5)  # events are flowing into both pods
    out = await asyncio.to_thread(release.upgrade, {"config.log_level": "WARNING"})
    assert "STATUS: deployed" in out
    traffic = await flow
    await asyncio.to_thread(watch.gone, old)
    pods = await asyncio.to_thread(release.wait_ready, 2)
    assert not old & {p["metadata"]["uid"] for p in pods}, "every pod was replaced"
    config = node.kube.get(f"/api/v1/namespaces/{release.ns}/configmaps/{NAME}")["data"]
    assert config["CONSUMER_LOG_LEVEL"] == "WARNING"
    ended = drained_in_grace(watch, old)
    rows = await all_stored_once(node_kafka, run, traffic)
    print(f"\nupgrade: {len(traffic.valid)} events, {rows} rows; {figures(ended)}")
    await asyncio.to_thread(release.uninstall)


async def test_scale_in_and_delete_of_a_busy_pod_lose_nothing(
        node: Node, node_image: str, node_helm: Helm, node_kafka: LocalKafka,
        node_pg: LocalPostgres) -> None:
    run = await deploy(node, node_helm, node_kafka, node_pg, ns="scale", replicas=3)
    release = run.release
    watch = PodWatch(node.kube, release.ns).start()
    three = {p["metadata"]["uid"] for p in release.pods()}
    flow = asyncio.create_task(produce(node_kafka.bootstrap, run.topic, 9_000, rate=250))
    await asyncio.sleep(5)
    await asyncio.to_thread(release.kubectl, "scale", f"deployment/{NAME}", "--replicas=1")
    (survivor,) = await asyncio.to_thread(release.wait_ready, 1)
    scaled_in = three - {survivor["metadata"]["uid"]}
    await asyncio.to_thread(watch.gone, scaled_in)

    # The one pod left owns all six partitions and is consuming right now.
    async def busy() -> bool:
        text = scrape(survivor) or ""
        return metric(text, "consumer_messages_total", topic=run.topic) > 0

    await wait_until(busy, 30, "the last pod consuming")
    assert not flow.done(), "the producer should still be sending"
    await asyncio.to_thread(release.kubectl, "delete", "pod", survivor["metadata"]["name"])
    await asyncio.to_thread(watch.gone, {survivor["metadata"]["uid"]})
    traffic = await flow
    await asyncio.to_thread(release.wait_ready, 1)
    ended = drained_in_grace(watch, three)
    rows = await all_stored_once(node_kafka, run, traffic)
    print(f"\nscale 3->1 and delete: {len(traffic.valid)} events, {rows} rows; "
          f"{figures(ended)}")
    await asyncio.to_thread(release.uninstall)
