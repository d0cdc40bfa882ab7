"""`helm test` on the real node, and SQLite on a claim per pod.

The chart's test hook asks /readyz through the Service: it passes on a healthy
release and must fail once the sink cannot be written (the pods then report
not ready, and the Service has nobody to route to). A SQLite sink lives on a
PersistentVolumeClaim (here bound to a static hostPath PersistentVolume: the
node has no provisioner), so its rows outlive `kubectl delete pod`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from devtools.harness import committed_all, create_topics, produce, wait_until
from devtools.kafka import LocalKafka
from devtools.postgres import LocalPostgres
from tests.chart.helm import Helm
from tests.chart.kube import wait_for
from tests.chart.node.flow import PARTITIONS, deploy
from tests.chart.node.node import Node
from tests.chart.node.workload import NAME, RELEASE, Release, get, kubectl

pytestmark = pytest.mark.integration

STORAGE_CLASS = "node-static"  # no StorageClass object: it only pairs the claim and the volume
UID = 10001  # the image's user (Dockerfile), owner of the volume's directory


def helm_test(release: Release) -> subprocess.CompletedProcess[str]:
    """`helm test` as users run it, with the test pod's log."""
    return release.helm.run("test", RELEASE, "-n", release.ns, "--logs", "--timeout", "120s",
                            check=False)


def readyz(release: Release) -> list[tuple[str, int, str]]:
    """What each pod's /readyz answers now: (pod, status, body)."""
    answers = []
    for pod in release.pods():
        ip = pod["status"].get("podIP")
        status, body = get(f"http://{ip}:8080/readyz", timeout=2) if ip else (0, "no IP")
        answers.append((pod["metadata"]["name"], status, body.strip()))
    return answers


async def test_helm_test_passes_then_fails_when_the_sink_is_unreachable(
        node: Node, node_image: str, node_helm: Helm, node_kafka: LocalKafka,
        node_pg: LocalPostgres) -> None:
    run = await deploy(node, node_helm, node_kafka, node_pg, ns="helm-test", replicas=2)
    release = run.release
    passed = await asyncio.to_thread(helm_test, release)
    print(f"\n$ helm test {RELEASE} --logs  # sink up\n{passed.stdout}{passed.stderr}")
    assert passed.returncode == 0, passed.stderr
    assert re.search(r"Phase:\s+Succeeded", passed.stdout)
    assert "every answer was 200" in passed.stdout

    # The database goes away while events keep coming: no write can succeed.
    await asyncio.to_thread(node_pg.stop_server)
    try:
        await produce(node_kafka.bootstrap, run.topic, 300)
        # Give readiness time to see the failing writes (probe period 5 s x 2).
        answers = await asyncio.to_thread(settle_not_ready, release, 60)
        print(f"\n/readyz of each pod with the sink down: {answers}")
        failed = await asyncio.to_thread(helm_test, release)
        print(f"\n$ helm test {RELEASE} --logs  # sink down\n{failed.stdout}{failed.stderr}")
        assert failed.returncode != 0, f"helm test passed with the sink down; /readyz: {answers}"
        assert re.search(r"Phase:\s+Failed", failed.stdout)
    finally:
        await asyncio.to_thread(node_pg.start_server)
    await asyncio.to_thread(release.uninstall)


def settle_not_ready(release: Release, within: float) -> list[tuple[str, int, str]]:
    """/readyz of each pod once none answers 200, or after `within` seconds."""
    deadline = time.monotonic() + within
    answers = readyz(release)
    while any(status == 200 for _, status, _ in answers) and time.monotonic() < deadline:
        time.sleep(2)
        answers = readyz(release)
    return answers


def static_volume(node: Node, ns: str, path: Path) -> str:
    """A hostPath PersistentVolume bound in advance to pod 0's claim."""
    path.mkdir(mode=0o700)
    os.chown(path, UID, UID)
    name = f"{ns}-data"
    node.kube.create("/api/v1/persistentvolumes", {
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Retain", "storageClassName": STORAGE_CLASS,
                 "claimRef": {"namespace": ns, "name": f"data-{NAME}-0"},
                 "hostPath": {"path": str(path), "type": "Directory"}}})
    return name


def stored_ids(release: Release, pod: str) -> set[str]:
    """The ids in the pod's SQLite file, read in the pod (as its own user)."""
    script = ("import json, sqlite3; c = sqlite3.connect('consumer.db'); "
              "print(json.dumps([r[0] for r in c.execute('select id from events')]))")
    ids: list[str] = json.loads(release.kubectl("exec", pod, "--", "python", "-c", script))
    return set(ids)


async def test_sqlite_on_a_claim_keeps_its_rows_when_the_pod_is_deleted(
        node: Node, node_image: str, node_helm: Helm, node_kafka: LocalKafka,
        tmp_path: Path) -> None:
    ns = "sqlite-claim"
    topic, dlq = await create_topics(node_kafka.bootstrap, partitions=PARTITIONS)
    group = f"{topic}-group"
    volume = static_volume(node, ns, tmp_path / "volume")
    release = await asyncio.to_thread(Release.install, node, node_helm, ns, {
        "replicaCount": 1, "kafka.bootstrapServers": node_kafka.bootstrap,
        "kafka.topics": [topic], "kafka.dlqTopic": dlq, "kafka.groupId": group,
        "kafka.partitions": PARTITIONS, "sink.url": "sqlite:///consumer.db",
        "persistence.enabled": True, "persistence.storageClassName": STORAGE_CLASS})
    print(f"\n$ helm install {RELEASE} helm/consumer --set sink.url=sqlite:///consumer.db "
          f"--set persistence.enabled=true ...\n{release.installed}")
    assert "WARNING: the sink is SQLite" in release.installed
    await asyncio.to_thread(release.wait_balanced, 1, PARTITIONS)
    pod = f"{NAME}-0"
    try:
        passed = await asyncio.to_thread(helm_test, release)
        print(f"\n$ helm test {RELEASE} --logs\n{passed.stdout}")
        assert passed.returncode == 0, passed.stderr

        first = await produce(node_kafka.bootstrap, topic, 500)

        async def stored(ids: set[str]) -> bool:
            return await asyncio.to_thread(stored_ids, release, pod) >= ids

        await wait_until(lambda: stored(first.valid), 120, "the first events in SQLite")
        await wait_until(lambda: committed_all(node_kafka.bootstrap, group, topic), 60,
                         "offsets committed")
        before = await asyncio.to_thread(stored_ids, release, pod)
        uid = release.pods()[0]["metadata"]["uid"]
        await asyncio.to_thread(release.kubectl, "delete", "pod", pod, "--wait=true")
        await asyncio.to_thread(wait_for, lambda: [
            p for p in release.pods() if p["metadata"]["uid"] != uid], 60, "a new pod 0")
        await asyncio.to_thread(release.wait_balanced, 1, PARTITIONS)
        after = await asyncio.to_thread(stored_ids, release, pod)
        print(f"\nrows in {pod}'s SQLite file: {len(before)} before kubectl delete pod, "
              f"{len(after)} in the new pod")
        assert after == before == first.valid, "rows lost with the pod"

        # The new pod writes on into the same file, and commits after it.
        second = await produce(node_kafka.bootstrap, topic, 200, start=500)
        await wait_until(lambda: stored(first.valid | second.valid), 120, "the second events")
        assert await asyncio.to_thread(stored_ids, release, pod) == first.valid | second.valid
    finally:
        await asyncio.to_thread(release.uninstall)
        # Claims outlive the release by design; this one and its volume go with the test.
        await asyncio.to_thread(kubectl, node, "-n", ns, "delete", "pvc", f"data-{NAME}-0",
                                "--wait=true")
        await asyncio.to_thread(kubectl, node, "delete", "pv", volume, "--wait=true")
