"""`consumer run` as a subprocess: shutdown, crash, a second member, ordering.

Every test produces a known set of (partition, offset) pairs and checks, from
the handler's own log, that each was handled at least once: none skipped.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import pytest

from devtools.harness import Service, committed_all, committed_offsets, produce, wait_until
from devtools.kafka import LocalKafka, create_topics
from tests.integration.engine.support import read_handled
from tests.support.kafka import NewTopicFactory

pytestmark = pytest.mark.integration

PARTITIONS = 6


def service(bootstrap: str, topic: str, handled: Path, **extra: str) -> Service:
    settings = {
        "bootstrap_servers": bootstrap, "topics": topic, "group_id": f"g-{topic}",
        "handler": "tests.integration.engine.handlers:record", "sink_url": "none",
        "log_level": "INFO", "commit_interval": "0.5", "shutdown_timeout": "20",
    }
    settings.update(extra)
    svc = Service(**settings)
    svc.env["TEST_HANDLED_FILE"] = str(handled)
    svc.env.setdefault("TEST_HANDLER_SLEEP", "0.002")
    return svc


async def all_committed(bootstrap: str, topic: str) -> bool:
    return await committed_all(bootstrap, f"g-{topic}", topic)


def handled_pairs(path: Path) -> set[tuple[int, int]]:
    return {(h.partition, h.offset) for h in read_handled(path)}


async def finish_after_restart(restarted: Service, bootstrap: str, topic: str,
                               sent: set[tuple[int, int]], handled: Path) -> None:
    """Run `restarted` until everything is committed, stop it, and check that
    every produced record was handled at least once."""
    restarted.start()
    try:
        await wait_until(lambda: all_committed(bootstrap, topic), 90,
                         "everything committed", restarted)
    finally:
        assert restarted.terminate() == 0, restarted.log_tail()
    assert handled_pairs(handled) == sent


async def test_sigterm_drains_and_exits_zero_then_restart_skips_nothing(
    kafka_bootstrap: str, new_topic: NewTopicFactory, tmp_path: Path
) -> None:
    topic = await new_topic("sigterm", partitions=PARTITIONS)
    sent = (await produce(kafka_bootstrap, topic, 3_000, keys=300)).placed
    handled = tmp_path / "handled.txt"
    # A small in-flight limit: the drain finishes what was fetched, not the backlog.
    first = service(kafka_bootstrap, topic, handled, concurrency="8",
                    max_in_flight="200").start()

    async def some_work() -> bool:
        return len(read_handled(handled)) >= 300

    await wait_until(some_work, 60, "first handled records", first)
    began = time.monotonic()
    assert first.terminate(timeout=40) == 0, first.log_tail()
    assert time.monotonic() - began < 20 + 5  # within the drain deadline
    assert "draining" in first.log_tail(100_000)
    assert len(handled_pairs(handled)) < len(sent), "stopped mid-stream"

    await finish_after_restart(service(kafka_bootstrap, topic, handled, concurrency="8"),
                               kafka_bootstrap, topic, sent, handled)


async def test_sigkill_mid_stream_then_restart_skips_nothing(
    kafka_bootstrap: str, new_topic: NewTopicFactory, tmp_path: Path
) -> None:
    topic = await new_topic("sigkill", partitions=PARTITIONS)
    sent = (await produce(kafka_bootstrap, topic, 3_000, keys=300)).placed
    handled = tmp_path / "handled.txt"
    first = service(kafka_bootstrap, topic, handled, commit_interval="0.2",
                    max_in_flight="200", concurrency="4")
    first.env["TEST_HANDLER_SLEEP"] = "0.01"
    first.start()

    async def some_commits() -> bool:
        offsets = await committed_offsets(kafka_bootstrap, f"g-{topic}", topic, PARTITIONS)
        return sum(offsets.values()) >= 500

    await wait_until(some_commits, 60, "first commits", first)
    first.kill()
    before = await committed_offsets(kafka_bootstrap, f"g-{topic}", topic, PARTITIONS)
    assert sum(before.values()) < len(sent), "killed mid-stream"
    # What was committed before the crash had really been handled.
    done_before = handled_pairs(handled)
    assert all((p, o) in done_before for p, end in before.items() for o in range(end)
               if (p, o) in sent)

    await finish_after_restart(service(kafka_bootstrap, topic, handled),
                               kafka_bootstrap, topic, sent, handled)


async def test_second_member_joins_and_leaves_mid_stream(
    kafka_bootstrap: str, new_topic: NewTopicFactory, tmp_path: Path
) -> None:
    topic = await new_topic("rebalance", partitions=PARTITIONS)
    sent = (await produce(kafka_bootstrap, topic, 4_000, keys=400)).placed
    handled = tmp_path / "handled.txt"
    # No periodic commits: an offset can only reach the group through a
    # revocation (or the final shutdown), so the hand-over proves the
    # commit-on-revoke.
    quiet = {"commit_interval": "3600", "commit_every": "1000000",
             "rebalance_timeout_ms": "30000", "concurrency": "4"}
    first = service(kafka_bootstrap, topic, handled, **quiet)
    first.env["TEST_HANDLER_SLEEP"] = "0.004"
    first.start()

    async def progress(n: int) -> bool:
        return len(read_handled(handled)) >= n

    await wait_until(lambda: progress(400), 60, "first member working", first)
    second = service(kafka_bootstrap, topic, handled, **quiet)
    second.env["TEST_HANDLER_SLEEP"] = "0.004"
    second.start()

    async def revoked_and_committed() -> bool:
        offsets = await committed_offsets(kafka_bootstrap, f"g-{topic}", topic, PARTITIONS)
        return sum(offsets.values()) > 0

    await wait_until(revoked_and_committed, 60, "commit on revocation", first)
    await wait_until(lambda: progress(2_000), 90, "both members working", second)
    assert second.terminate() == 0, second.log_tail()  # leaves: another rebalance
    try:
        await wait_until(lambda: progress(len(sent)), 120, "first member finishing", first)
    finally:
        assert first.terminate() == 0, first.log_tail()
    assert await all_committed(kafka_bootstrap, topic)
    lines = read_handled(handled)
    assert {(h.partition, h.offset) for h in lines} == sent
    # Drain-then-commit on revocation hands partitions over without a
    # message handled twice.
    assert len(lines) == len(sent)
    assert "partitions revoked" in first.log_tail(1_000_000)


async def test_key_ordering_keeps_per_key_order_with_concurrency_16(
    kafka_bootstrap: str, new_topic: NewTopicFactory, tmp_path: Path
) -> None:
    topic = await new_topic("ordering", partitions=PARTITIONS)
    sent = (await produce(kafka_bootstrap, topic, 3_000, keys=64)).placed
    handled = tmp_path / "handled.txt"
    svc = service(kafka_bootstrap, topic, handled, ordering="key", concurrency="16")
    svc.env["TEST_HANDLER_SLEEP"] = "0.003"
    svc.start()
    try:
        await wait_until(lambda: all_committed(kafka_bootstrap, topic), 90,
                         "everything committed", svc)
    finally:
        assert svc.terminate() == 0, svc.log_tail()
    lines = sorted(read_handled(handled), key=lambda h: h.at_ns)
    assert {(h.partition, h.offset) for h in lines} == sent
    by_key: dict[tuple[int, str], list[int]] = {}
    for h in lines:
        by_key.setdefault((h.partition, h.key), []).append(h.offset)
    assert all(offsets == sorted(offsets) for offsets in by_key.values())
    # Partitions interleave: each partition is handled while others are, and
    # the handling order keeps switching between them.
    spans = {p: (min(h.at_ns for h in lines if h.partition == p),
                 max(h.at_ns for h in lines if h.partition == p)) for p in range(PARTITIONS)}
    for p, (start, end) in spans.items():
        assert any(s < end and start < e for q, (s, e) in spans.items() if q != p)
    switches = sum(1 for a, b in itertools.pairwise(lines) if a.partition != b.partition)
    assert switches >= 10 * PARTITIONS


async def test_a_final_commit_that_fails_exits_one_and_loses_nothing(tmp_path: Path) -> None:
    """The broker goes away after the work is done but before anything was
    committed: the drain completes, the final commit cannot land, and the
    exit code says the stop was not clean (a supervisor restarts it; the
    work is consumed again, never skipped)."""
    broker = LocalKafka()  # its own: this test stops it
    svc: Service | None = None
    try:
        bootstrap = await asyncio.to_thread(broker.start)  # it runs a loop of its own
        topic = "final-commit"
        await create_topics(bootstrap, {topic: PARTITIONS})
        await produce(bootstrap, topic, 300, keys=30)
        handled = tmp_path / "handled.txt"
        # Nothing is committed on the way: no periodic commit before the end.
        svc = service(bootstrap, topic, handled, commit_interval="600",
                      commit_timeout="3", shutdown_timeout="10").start()
        await wait_until(lambda: len(read_handled(handled)) >= 300, 60, "all handled", svc)
        broker.stop()
        assert svc.terminate(timeout=60) == 1, svc.log_tail()
        log = svc.log_tail(1_000_000)
        assert "final commit failed" in log
        assert "Traceback" not in log  # an orderly exit, not a crash
    finally:
        if svc is not None and svc.proc is not None and svc.proc.poll() is None:
            svc.kill()
        broker.stop()
