"""The dead-letter circuit breaker stops the service on a flood of poison;
`consumer dlq inspect|replay` round trip: dead-lettered by a broken handler,
replayed, processed by the fixed one."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from devtools.harness import Service, committed_offsets, read_topic, wait_until
from devtools.ports import project_root
from tests.integration.gates.support import headers_of
from tests.support.kafka import NewTopicFactory, event_value, produce_values

pytestmark = pytest.mark.integration


async def cli(*args: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSUMER_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "consumer.cli", *args, cwd=project_root(), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_breaker_trips_on_a_flood_of_poison(
        kafka_bootstrap: str, new_topic: NewTopicFactory) -> None:
    topic = await new_topic("gates-flood")
    dlq = await new_topic("gates-flood-dlq")
    await produce_values(kafka_bootstrap, topic, [b"not an event"] * 40)
    group = f"g-{uuid.uuid4().hex[:8]}"
    svc = Service(bootstrap_servers=kafka_bootstrap, topics=topic, dlq_topic=dlq,
                  group_id=group, sink_url="none", ordering="partition",
                  dlq_breaker_consecutive="5", dlq_breaker_window="20",
                  dlq_breaker_ratio="0.5", commit_interval="0.2", log_level="INFO").start()
    try:
        assert svc.proc is not None
        code = await asyncio.to_thread(svc.proc.wait, 60)
    finally:
        if svc.alive:
            svc.kill()
    log = svc.log_tail(200_000)
    assert code != 0, log[-3000:]
    assert "dead-letter circuit breaker OPEN" in log
    letters = await read_topic(kafka_bootstrap, dlq, idle=1.0)
    assert len(letters) == 5  # stopped at the threshold, not 40
    assert (await committed_offsets(kafka_bootstrap, group, topic, 1))[0] <= 5


async def test_replay_round_trip(kafka_bootstrap: str, new_topic: NewTopicFactory) -> None:
    topic = await new_topic("gates-replay")
    dlq = await new_topic("gates-replay-dlq")
    produced = [event_value(i) for i in range(6)]
    await produce_values(kafka_bootstrap, topic, [v for _, v in produced], key=b"order-1")
    group = f"g-{uuid.uuid4().hex[:8]}"
    db = Path(tempfile.mkdtemp(prefix="gates-replay-")) / "events.db"
    common = {"bootstrap_servers": kafka_bootstrap, "topics": topic, "dlq_topic": dlq,
              "group_id": group, "commit_interval": "0.2"}

    async def committed(n: int) -> bool:
        return await committed_offsets(kafka_bootstrap, group, topic, 1) == {0: n}

    broken = Service(**common, handler="tests.integration.gates.handlers:broken",
                     sink_url="none").start()
    try:
        await wait_until(lambda: committed(6), 60, "the broken run to finish", broken)
        assert broken.terminate() == 0
    finally:
        if broken.alive:
            broken.kill()

    code, out = await cli("dlq", "inspect", "--bootstrap-servers", kafka_bootstrap,
                          "--topic", dlq)
    assert code == 0, out
    assert "6 of 6 records" in out
    assert out.count("FatalError") == 6
    code, out = await cli("dlq", "inspect", "--bootstrap-servers", kafka_bootstrap,
                          "--topic", dlq, "--from-offset", "1", "--limit", "2")
    assert code == 0, out
    assert "2 of 3 records" in out  # offset 0 scanned and skipped, stopped after 2

    target = ["--bootstrap-servers", kafka_bootstrap, "--topic", dlq]
    code, out = await cli("dlq", "replay", *target, "--error-type", "InvalidEvent")
    assert code == 0, out
    assert "matched 0, replayed 0" in out
    code, out = await cli("dlq", "replay", *target, "--dry-run")
    assert code == 0, out
    assert f"would replay 6 (6 to {topic})" in out
    code, out = await cli("dlq", "replay", *target)
    assert code == 0, out
    assert f"replayed 6 (6 to {topic})" in out

    fixed = Service(**common, sink_url=f"sqlite:///{db}").start()  # the built-in store
    try:
        await wait_until(lambda: committed(12), 60, "the replayed events to be stored", fixed)
        assert fixed.terminate() == 0
    finally:
        if fixed.alive:
            fixed.kill()

    with sqlite3.connect(db) as conn:
        stored = {row[0] for row in conn.execute("SELECT id FROM events")}
    assert stored == {event_id for event_id, _ in produced}
    replayed = [r for r in await read_topic(kafka_bootstrap, topic, idle=1.0) if r.offset >= 6]
    assert len(replayed) == 6
    for rec in replayed:
        assert rec.key == b"order-1"
        assert headers_of(rec)["dlq.replay.count"] == "1"
        assert not any(k.startswith("dlq.") and k != "dlq.replay.count" for k, _ in rec.headers)
