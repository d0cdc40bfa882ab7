"""What users do to a running release, done while events flow: `helm upgrade`
with a changed setting (a rolling update), `kubectl scale` from 3 to 1, and
`kubectl delete pod` of a busy pod. Every replaced pod must drain within its
grace period (exit 0, no SIGKILL) and every event must end up as one row."""

from __future__ import annotations

import asyncio

import pytest

from consumer.dev.kafka import LocalKafka
from consumer.dev.postgres import LocalPostgres
from tests.chart.helm import Helm
from tests.chart.node.node import Node
from tests.chart.node.workload import NAME, PodWatch, Release, Termination, metric, scrape
from tests.integration.pipeline.harness import (
    Traffic,
    committed_all,
    count_rows,
    create_topics,
    produce,
    stored_ids,
    wait_until,
)
from tests.integration.sinks.dbs import fresh_database

pytestmark = pytest.mark.integration

SHUTDOWN_TIMEOUT = 10
GRACE = 10  # terminationGraceMarginSeconds: the pod's grace is 20 s


async def start_release(node: Node, helm: Helm, kafka: LocalKafka, pg: LocalPostgres, *,
                        ns: str, replicas: int) -> tuple[Release, str, str, str]:
    topic, dlq = await create_topics(kafka.bootstrap, partitions=6)
    dsn = await fresh_database(pg.dsn, ns)
    group = f"{topic}-group"
    release = await asyncio.to_thread(Release.install, node, helm, ns, {
        "replicaCount": replicas, "kafka.bootstrapServers": kafka.bootstrap,
        "kafka.topics": [topic], "kafka.dlqTopic": dlq, "kafka.groupId": group,
        "kafka.partitions": 6, "sink.url": dsn, "shutdownTimeout": SHUTDOWN_TIMEOUT,
        "terminationGraceMarginSeconds": GRACE})
    await asyncio.to_thread(release.wait_balanced, replicas, 6)
    return release, topic, group, dsn


async def all_stored_once(kafka: LocalKafka, topic: str, group: str, dsn: str,
                          traffic: Traffic) -> int:
    async def stored() -> bool:
        return await count_rows(dsn) >= len(traffic.valid)

    async def committed() -> bool:
        return await committed_all(kafka.bootstrap, group, topic)

    await wait_until(stored, 180, f"{len(traffic.valid)} rows")
    await wait_until(committed, 60, "offsets committed to the end")
    ids = await stored_ids(dsn)
    assert len(ids) == len(set(ids)), "an event stored twice"
    assert set(ids) == traffic.valid, f"{len(traffic.valid - set(ids))} events lost"
    return len(ids)


def drained_in_grace(watch: PodWatch, uids: set[str]) -> list[Termination]:
    """Each pod's container exited 0 on its own, within the grace period."""
    ended = [watch.termination(uid) for uid in sorted(uids)]
    for end in ended:
        assert end.grace_seconds == SHUTDOWN_TIMEOUT + GRACE, "the chart's grace period"
        assert end.exit_code == 0, f"{end.name} exited {end.exit_code} ({end.reason})"
        assert end.drain_seconds < end.grace_seconds, (
            f"{end.name} took {end.drain_seconds:.0f}s of its {end.grace_seconds}s")
    return ended


def figures(ended: list[Termination]) -> str:
    return ", ".join(f"{e.name} exit {e.exit_code} {e.observed_seconds:.1f}s after SIGTERM "
                     f"(grace {e.grace_seconds}s)" for e in ended)


async def test_helm_upgrade_rolls_under_flow_without_loss(
        node: Node, node_image: str, node_helm: Helm, node_kafka: LocalKafka,
        node_pg: LocalPostgres) -> None:
    release, topic, group, dsn = await start_release(node, node_helm, node_kafka, node_pg,
                                                     ns="upgrade", replicas=2)
    watch = PodWatch(node.kube, release.ns).start()
    old = {p["metadata"]["uid"] for p in release.pods()}
    flow = asyncio.create_task(produce(node_kafka.bootstrap, topic, 6_000, rate=200))
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
    rows = await all_stored_once(node_kafka, topic, group, dsn, traffic)
    print(f"\nupgrade: {len(traffic.valid)} events, {rows} rows; {figures(ended)}")
    await asyncio.to_thread(release.uninstall)


async def test_scale_in_and_delete_of_a_busy_pod_lose_nothing(
        node: Node, node_image: str, node_helm: Helm, node_kafka: LocalKafka,
        node_pg: LocalPostgres) -> None:
    release, topic, group, dsn = await start_release(node, node_helm, node_kafka, node_pg,
                                                     ns="scale", replicas=3)
    watch = PodWatch(node.kube, release.ns).start()
    three = {p["metadata"]["uid"] for p in release.pods()}
    flow = asyncio.create_task(produce(node_kafka.bootstrap, topic, 9_000, rate=250))
    await asyncio.sleep(5)
    await asyncio.to_thread(release.kubectl, "scale", f"deployment/{NAME}", "--replicas=1")
    (survivor,) = await asyncio.to_thread(release.wait_ready, 1)
    scaled_in = three - {survivor["metadata"]["uid"]}
    await asyncio.to_thread(watch.gone, scaled_in)

    # The one pod left owns all six partitions and is consuming right now.
    async def busy() -> bool:
        text = scrape(survivor) or ""
        return metric(text, "consumer_messages_total", topic=topic) > 0

    await wait_until(busy, 30, "the last pod consuming")
    assert not flow.done(), "the producer should still be sending"
    await asyncio.to_thread(release.kubectl, "delete", "pod", survivor["metadata"]["name"])
    await asyncio.to_thread(watch.gone, {survivor["metadata"]["uid"]})
    traffic = await flow
    await asyncio.to_thread(release.wait_ready, 1)
    ended = drained_in_grace(watch, three)
    rows = await all_stored_once(node_kafka, topic, group, dsn, traffic)
    print(f"\nscale 3->1 and delete: {len(traffic.valid)} events, {rows} rows; "
          f"{figures(ended)}")
    await asyncio.to_thread(release.uninstall)
