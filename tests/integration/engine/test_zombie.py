"""Zombie fencing: a member frozen (SIGSTOP) past the session timeout is
evicted and its partitions move to another member; when it wakes up
(SIGCONT) it finishes the work it held, but those late completions must not
move the group's offsets — the broker refuses commits from a member of an
old generation, and the engine fences lost partitions at once (no drain:
their records are the new owner's work now).

Shown with the committed offsets read from the broker: while the new owner
(held by a gate, so it completes nothing) owns every partition, the
committed offsets stay where the zombie left them, although the zombie
handled records past them after waking up.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from devtools.harness import Service, committed_all, committed_offsets, produce, wait_until
from tests.integration.engine.support import read_handled
from tests.support.kafka import NewTopicFactory

pytestmark = pytest.mark.integration

PARTITIONS = 4
SESSION = {"session_timeout_ms": "6000", "heartbeat_interval_ms": "1000"}


def member(bootstrap: str, topic: str, handled: Path, handler: str, **extra: str) -> Service:
    svc = Service(bootstrap_servers=bootstrap, topics=topic, group_id=f"g-{topic}",
                  handler=f"tests.integration.engine.handlers:{handler}", sink_url="none",
                  log_level="INFO", commit_interval="0.5", shutdown_timeout="20",
                  http_host="127.0.0.1",
                  **SESSION, **extra)
    svc.env["TEST_HANDLED_FILE"] = str(handled)
    return svc


async def test_zombie_late_completions_do_not_move_offsets_of_moved_partitions(
    kafka_bootstrap: str, new_topic: NewTopicFactory, tmp_path: Path
) -> None:
    topic = await new_topic("zombie", partitions=PARTITIONS)
    group = f"g-{topic}"
    sent = (await produce(kafka_bootstrap, topic, 1_500, keys=150)).placed
    zombie_file, owner_file, gate = (tmp_path / "zombie.txt", tmp_path / "owner.txt",
                                     tmp_path / "gate")
    zombie = member(kafka_bootstrap, topic, zombie_file, "record", concurrency="4",
                    max_in_flight="120")
    zombie.env["TEST_HANDLER_SLEEP"] = "0.02"
    gate.touch()
    owner = member(kafka_bootstrap, topic, owner_file, "gated", rebalance_timeout_ms="30000")
    owner.env["TEST_GATE_FILE"] = str(gate)
    zombie.start()
    try:
        async def some_commits() -> bool:
            offsets = await committed_offsets(kafka_bootstrap, group, topic, PARTITIONS)
            return sum(offsets.values()) >= 200

        await wait_until(some_commits, 60, "the first member's commits", zombie)
        assert zombie.proc is not None
        os.kill(zombie.proc.pid, signal.SIGSTOP)
        await asyncio.sleep(1.0)  # a commit already on the wire lands first
        before = await committed_offsets(kafka_bootstrap, group, topic, PARTITIONS)
        assert sum(before.values()) < len(sent), "stopped mid-stream"

        owner.start()

        async def owner_has_everything() -> bool:
            lines = [ln for ln in owner.log_tail(1_000_000).splitlines()
                     if "partitions assigned" in ln]
            return bool(lines) and all(f"{topic}[{p}]" in lines[-1] for p in range(PARTITIONS))

        # The zombie's session expires (6 s): it is evicted, the owner gets all.
        await wait_until(owner_has_everything, 60, "the owner taking every partition", owner)
        woke_ns = time.monotonic_ns()
        os.kill(zombie.proc.pid, signal.SIGCONT)
        # The zombie finishes what it held and tries to commit, then rejoins;
        # the rebalance waits for the owner's drain, held by the gate for up
        # to 18 s (60 % of its rebalance timeout): watch for 8 s of that.
        seen = []
        while time.monotonic_ns() - woke_ns < 8e9:
            await asyncio.sleep(0.5)
            seen.append(await committed_offsets(kafka_bootstrap, group, topic, PARTITIONS))
        late = [h for h in read_handled(zombie_file) if h.at_ns > woke_ns]
        print(f"\ncommitted before {before}; zombie completions after waking: {len(late)}")
        assert late, "the zombie had work in flight to finish"
        assert any(h.offset >= before[h.partition] for h in late)
        assert all(offsets == before for offsets in seen), (
            f"offsets moved while the partitions were another member's: {seen}\n"
            f"{zombie.log_tail()}")
        assert not read_handled(owner_file), "the owner completed nothing (gated)"

        async def fenced() -> bool:
            return "partitions lost" in zombie.log_tail(1_000_000)

        # Evicted, the zombie drops its queued work instead of draining it.
        await wait_until(fenced, 30, "the zombie noticing its partitions were lost", zombie)

        gate.unlink()  # let the owner work: everything is handled and committed
        await wait_until(lambda: committed_all(kafka_bootstrap, group, topic), 120,
                         "everything committed", owner)
    finally:
        if zombie.proc is not None and zombie.alive:
            os.kill(zombie.proc.pid, signal.SIGCONT)
        gate.unlink(missing_ok=True)
        codes = [svc.terminate() if svc.proc is not None else 0 for svc in (zombie, owner)]
    assert codes == [0, 0], f"{zombie.log_tail()}\n{owner.log_tail()}"
    handled = {(h.partition, h.offset) for h in read_handled(zombie_file)
               + read_handled(owner_file)}
    assert handled == sent
