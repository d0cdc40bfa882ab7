"""The SIGSTOP zombie under exactly-once delivery: a member frozen past the
session timeout is evicted, the new owner claims its partitions (their
epochs go up) and resumes where the database says; when the zombie wakes,
the rows it still held are refused — its write carries the old epoch — and
never written. The per-key counters end exact and every event is one row."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter

import pytest

from devtools.harness import Service, committed_all, produce, wait_until
from tests.integration.exactly_once.hooks import COUNTERS
from tests.integration.sinks.dbs import fetch, fresh_database
from tests.support.kafka import NewTopicFactory

pytestmark = pytest.mark.integration

PARTITIONS = 4
EVENTS = 3_000
KEYS = 150


def member(bootstrap: str, topic: str, dsn: str, **extra: str) -> Service:
    return Service(bootstrap_servers=bootstrap, topics=topic, group_id=f"g-{topic}",
                   sink_url=dsn, delivery="exactly_once",
                   handler="tests.integration.exactly_once.hooks:slow_store",
                   sink_apply="tests.integration.exactly_once.hooks:count_keys",
                   log_level="INFO", commit_interval="0.5", shutdown_timeout="20",
                   session_timeout_ms="6000", heartbeat_interval_ms="1000", **extra)


async def counted(dsn: str) -> int:
    return int((await fetch(dsn, "SELECT coalesce(sum(n), 0) AS n FROM counters"))[0]["n"])


async def test_a_woken_zombies_rows_are_refused_and_the_counters_end_exact(
        kafka_bootstrap: str, pg_dsn: str, new_topic: NewTopicFactory) -> None:
    topic = await new_topic("eos-zombie", partitions=PARTITIONS)
    group = f"g-{topic}"
    dsn = await fresh_database(pg_dsn, "eos_zombie")
    await fetch(dsn, COUNTERS)
    await produce(kafka_bootstrap, topic, EVENTS, keys=KEYS)
    # The zombie buffers its rows for 2 s: some are waiting when it freezes.
    zombie = member(kafka_bootstrap, topic, dsn, concurrency="8", max_in_flight="400",
                    batch_max_latency="2", batch_max_items="100000")
    zombie.env["TEST_HANDLER_SLEEP"] = "0.01"
    owner = member(kafka_bootstrap, topic, dsn, rebalance_timeout_ms="30000")
    zombie.start()
    try:
        await wait_until(lambda: _ge(dsn, 300), 60,
                         "the zombie's first rows", zombie)
        assert zombie.proc is not None
        os.kill(zombie.proc.pid, signal.SIGSTOP)
        owner.start()

        async def owner_claimed_everything() -> bool:
            return owner.log_tail(1_000_000).count("partition claimed") >= PARTITIONS

        await wait_until(owner_claimed_everything, 90, "the owner claiming every partition",
                         owner)
        os.kill(zombie.proc.pid, signal.SIGCONT)

        async def refused() -> bool:
            return "not written (fenced)" in zombie.log_tail(1_000_000)

        await wait_until(refused, 60, "the zombie's rows refused", zombie)
        # Refused by the database itself: the zombie still thought the
        # partitions its, and its transaction carried the old epoch.
        lines = [ln for ln in zombie.log_tail(1_000_000).splitlines() if "(fenced)" in ln]
        assert any(f"claimed by another member since our claim: {topic}[" in ln
                   for ln in lines), lines
        await wait_until(lambda: committed_all(kafka_bootstrap, group, topic), 120,
                         "everything committed", owner)
        await asyncio.sleep(1.0)  # a write the zombie might still try lands or fails
    finally:
        if zombie.proc is not None and zombie.alive:
            os.kill(zombie.proc.pid, signal.SIGCONT)
        codes = [svc.terminate() if svc.proc is not None else 0 for svc in (zombie, owner)]
    assert codes == [0, 0], f"{zombie.log_tail()}\n{owner.log_tail()}"
    expected = Counter(f"k{i % KEYS}" for i in range(EVENTS))
    got = {bytes(r["key"]).decode(): r["n"] for r in await fetch(dsn, "SELECT * FROM counters")}
    assert got == dict(expected)
    assert (await fetch(dsn, "SELECT count(*) AS n FROM events"))[0]["n"] == EVENTS


async def _ge(dsn: str, n: int) -> bool:
    return await counted(dsn) >= n
