"""Static membership: the chart runs a StatefulSet whose pod names are the
members' `group.instance.id`, so a rolling restart hands each restarted pod its
own partitions back without rebalancing the others. Counted in the service's
own metric: `consumer_rebalances_total{kind="assigned"}` does not move in any
member while the others restart, and a restarted member is assigned once."""

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

REPLICAS = 3
SESSION_TIMEOUT_MS = 45_000  # a restarted pod is back well within it


async def test_rolling_restart_with_static_membership_does_not_rebalance(
        node: Node, node_image: str, node_helm: Helm, node_kafka: LocalKafka,
        node_pg: LocalPostgres) -> None:
    run = await deploy(node, node_helm, node_kafka, node_pg, ns="static", replicas=REPLICAS,
                       **{"staticMembership.enabled": True,
                          "staticMembership.sessionTimeoutMs": SESSION_TIMEOUT_MS})
    release = run.release
    pods = release.pods()
    assert sorted(p["metadata"]["name"] for p in pods) == [f"{NAME}-{i}" for i in range(3)]
    before = {p["metadata"]["uid"] for p in pods}

    # Every pod has its first assignment before the restart begins.
    assignments: dict[str, float] = {}  # pod uid -> highest assignment count seen
    names: dict[str, str] = {}

    def sample() -> None:
        for pod in release.pods():
            text = scrape(pod)
            if text is not None:
                uid = pod["metadata"]["uid"]
                names[uid] = pod["metadata"]["name"]
                count = metric(text, "consumer_rebalances_total", kind="assigned")
                assignments[uid] = max(assignments.get(uid, 0), count)

    async def all_assigned() -> bool:
        await asyncio.to_thread(sample)
        return len(assignments) == REPLICAS and all(v >= 1 for v in assignments.values())

    await wait_until(all_assigned, 60, "every member assigned")

    # Counts before the restart (the install itself rebalanced as members
    # joined); a member started during the restart begins at 1.
    baseline = dict(assignments)
    watch = PodWatch(node.kube, release.ns).start()
    flow = asyncio.create_task(produce(node_kafka.bootstrap, run.topic, 6_000, rate=150))
    await asyncio.sleep(3)
    await asyncio.to_thread(release.kubectl, "rollout", "restart", f"statefulset/{NAME}")
    status = asyncio.create_task(asyncio.to_thread(
        release.kubectl, "rollout", "status", f"statefulset/{NAME}", "--timeout=300s"))
    while not status.done():  # sample every member while the others restart
        await asyncio.to_thread(sample)
        await asyncio.sleep(0.5)
    await status
    traffic = await flow
    await asyncio.to_thread(watch.gone, before)
    await asyncio.to_thread(sample)
    after = {p["metadata"]["uid"] for p in await asyncio.to_thread(release.wait_ready,
                                                                   REPLICAS)}
    assert not before & after, "every pod was restarted"
    ended = drained_in_grace(watch, before)
    rows = await all_stored_once(node_kafka, run, traffic)
    rebalanced = {f"{names[uid]} ({uid[:8]})": count - baseline.get(uid, 1)
                  for uid, count in assignments.items() if count > baseline.get(uid, 1)}
    print(f"\nstatic rolling restart: {len(traffic.valid)} events, {rows} rows; "
          f"{len(assignments)} member processes sampled, "
          f"{sum(rebalanced.values(), 0.0):.0f} rebalances; {figures(ended)}")
    assert after <= set(assignments), "every new member was sampled"
    assert not rebalanced, f"members rebalanced during the restart: {rebalanced}"
    await asyncio.to_thread(release.uninstall)
