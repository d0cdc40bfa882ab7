"""The steps the real-node tests share: a release wired to a fresh topic and
database, the exactly-once check on what it stored, and the drain check on
the pods it replaced."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from consumer.config import Settings
from devtools.harness import (
    Traffic,
    committed_all,
    count_rows,
    create_topics,
    stored_ids,
    wait_until,
)
from devtools.kafka import LocalKafka
from devtools.postgres import LocalPostgres
from tests.chart.helm import Helm, grace_period
from tests.chart.node.node import Node
from tests.chart.node.workload import PodWatch, Release, Termination
from tests.integration.sinks.dbs import fresh_database

PARTITIONS = 6
SHUTDOWN_TIMEOUT = 10
GRACE = 10  # terminationGraceMarginSeconds
#: Each pod's grace period: the stop deadlines with a PostgreSQL sink, plus GRACE.
GRACE_SECONDS = grace_period(Settings(shutdown_timeout=SHUTDOWN_TIMEOUT), "postgresql://", GRACE)


@dataclass(frozen=True)
class Deployed:
    release: Release
    topic: str
    dlq: str
    group: str
    dsn: str


async def deploy(node: Node, helm: Helm, kafka: LocalKafka, pg: LocalPostgres, *, ns: str,
                 replicas: int, **values: Any) -> Deployed:
    """`helm install --wait` in namespace `ns`, consuming a fresh topic into a
    fresh database; returns once the group has settled on all partitions."""
    topic, dlq = await create_topics(kafka.bootstrap, partitions=PARTITIONS)
    dsn = await fresh_database(pg.dsn, ns)
    group = f"{topic}-group"
    release = await asyncio.to_thread(Release.install, node, helm, ns, {
        "replicaCount": replicas, "kafka.bootstrapServers": kafka.bootstrap,
        "kafka.topics": [topic], "kafka.dlqTopic": dlq, "kafka.groupId": group,
        "kafka.partitions": PARTITIONS, "sink.url": dsn, "shutdownTimeout": SHUTDOWN_TIMEOUT,
        "terminationGraceMarginSeconds": GRACE, **values})
    await asyncio.to_thread(release.wait_balanced, replicas, PARTITIONS)
    return Deployed(release, topic, dlq, group, dsn)


async def all_stored_once(kafka: LocalKafka, run: Deployed, traffic: Traffic) -> int:
    """Every valid event is one row, none missing, none twice, and the group
    committed to the end. Returns the row count."""
    async def stored() -> bool:
        return await count_rows(run.dsn) >= len(traffic.valid)

    async def committed() -> bool:
        return await committed_all(kafka.bootstrap, run.group, run.topic)

    await wait_until(stored, 180, f"{len(traffic.valid)} rows")
    await wait_until(committed, 60, "offsets committed to the end")
    ids = await stored_ids(run.dsn)
    assert len(ids) == len(set(ids)), "an event stored twice"
    assert set(ids) == traffic.valid, f"{len(traffic.valid - set(ids))} events lost"
    return len(ids)


def drained_in_grace(watch: PodWatch, uids: set[str]) -> list[Termination]:
    """Each pod's container exited 0 on its own, within the grace period."""
    ended = [watch.termination(uid) for uid in sorted(uids)]
    for end in ended:
        assert end.grace_seconds == GRACE_SECONDS, "the chart's grace period"
        assert end.exit_code == 0, f"{end.name} exited {end.exit_code} ({end.reason})"
        assert end.drain_seconds < end.grace_seconds, (
            f"{end.name} took {end.drain_seconds:.0f}s of its {end.grace_seconds}s")
    return ended


def figures(ended: list[Termination]) -> str:
    return ", ".join(f"{e.name} exit {e.exit_code} {e.observed_seconds:.1f}s after SIGTERM "
                     f"(grace {e.grace_seconds}s)" for e in ended)
