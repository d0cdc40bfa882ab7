"""Engine bookkeeping that needs no broker, against an in-memory consumer
(`tests.support.consumer`): the drain deadline against a processor whose
flush never returns, the commit counter across rebalances, lost partitions
fenced without a drain, commits retried on their own timer and moved past
transaction markers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from consumer.config import load_settings
from consumer.engine.engine import Engine
from consumer.observability.metrics import Metrics
from consumer.types import TP, Done, Record, RecordProcessor
from tests.support.consumer import FakeConsumer
from tests.support.records import consumer_record
from tests.support.waiting import until


class StuckSink(RecordProcessor):
    """A processor whose flush waits forever, like a batcher whose sink is down."""

    async def process(self, record: Record, done: Done) -> None:
        return None

    async def flush(self) -> None:
        await asyncio.Event().wait()

    async def close(self) -> None:
        return None


@pytest.fixture
def fake() -> FakeConsumer:
    return FakeConsumer()


@pytest.fixture
async def eng(fake: FakeConsumer) -> AsyncIterator[Engine]:
    settings = load_settings(bootstrap_servers="127.0.0.1:9", topics=["t"], sink_url="none")
    engine = Engine(settings, StuckSink(), Metrics(), consumer=fake)
    yield engine
    await engine.close()


async def test_drain_gives_up_at_its_deadline_even_if_flush_hangs(eng: Engine) -> None:
    tp = TP("t", 0)
    await eng.on_assigned({tp})
    state = eng._states[tp]
    state.deliver([consumer_record(0)])  # in flight, never done
    began = time.monotonic()
    assert not await eng._drain({state}, 0.3)
    assert time.monotonic() - began < 2.0


async def test_drain_stops_at_once_on_a_second_signal(eng: Engine) -> None:
    tp = TP("t", 0)
    await eng.on_assigned({tp})
    state = eng._states[tp]
    state.deliver([consumer_record(0)])
    asyncio.get_running_loop().call_later(0.1, eng.request_stop, True)
    began = time.monotonic()
    assert not await eng._drain({state}, 60)
    assert time.monotonic() - began < 2.0


async def test_completed_count_never_decreases_across_rebalances(eng: Engine) -> None:
    tp = TP("t", 0)
    await eng.on_assigned({tp})
    first = eng._states[tp]
    records = [consumer_record(i) for i in range(3)]
    first.deliver(records)
    for record in records:
        first.done_run((record,))
    assert eng._completed() == 3
    await eng.on_revoked({tp})  # nothing assigned in the client: no commit is sent
    await eng.on_assigned({tp})
    assert eng._completed() == 3
    second = eng._states[tp]
    second.deliver([consumer_record(3)])
    second.done_run((consumer_record(3),))
    assert eng._completed() == 4


async def test_lost_partitions_are_fenced_at_once_not_drained(eng: Engine,
                                                               fake: FakeConsumer) -> None:
    # Evicted while frozen: aiokafka reset our generation, then revokes. The
    # partitions are another member's already; draining would redo its work.
    tp = TP("t", 0)
    await eng.on_assigned({tp})
    state = eng._states[tp]
    # in flight; this processor never completes them
    state.deliver([consumer_record(0), consumer_record(1)])
    fake.lost = True
    began = time.monotonic()
    await eng.on_revoked({tp})
    assert time.monotonic() - began < 2.0  # not the 36 s revocation deadline
    assert tp not in eng._states
    state.done_run((consumer_record(0),))  # a late completion of the zombie
    assert state.pending_commit() is None
    assert state.in_flight == 1


async def test_state_and_the_readiness_reason_follow_the_stop(eng: Engine) -> None:
    assert eng.state == "starting"
    assert eng.unready_reason() == "starting: not consuming yet"
    eng._started = True  # what run() sets once subscribed
    assert (eng.state, eng.unready_reason()) == ("consuming", None)
    await eng.on_assigned({TP("t", 0)})
    eng._states[TP("t", 0)].deliver([consumer_record(0), consumer_record(1)])
    eng.request_stop()
    assert eng.state == "draining"
    assert eng.unready_reason() == ("draining: stopping, 2 message(s) in flight to finish "
                                    "before the last commit")
    eng.request_stop(immediate=True)  # a second signal
    assert eng.state == "stopping"
    await eng.close()
    assert eng.state == "stopped"


class Completes(RecordProcessor):
    async def process(self, record: Record, done: Done) -> None:
        done(record)


async def running(fake: FakeConsumer, **settings: Any) -> tuple[Engine, asyncio.Task[int]]:
    opts: dict[str, Any] = {"bootstrap_servers": "127.0.0.1:9", "topics": ["t"],
                               "sink_url": "none", "commit_interval": 0.1, **settings}
    engine = Engine(load_settings(**opts), Completes(), Metrics(), consumer=fake)
    task = asyncio.create_task(engine.run())
    await until(lambda: fake.listener is not None)
    return engine, task


async def test_a_failed_commit_is_retried_without_new_messages(fake: FakeConsumer) -> None:
    tp = TP("t", 0)
    fake.commit_failures = 2
    engine, task = await running(fake)
    try:
        await fake.assign(tp)
        fake.queue(consumer_record(0), consumer_record(1), consumer_record(2))
        await until(lambda: fake.committed.get(tp) == 3)
        assert fake.commits >= 3  # two refused, then the one that landed
    finally:
        engine.request_stop()
        assert await task == 0


async def test_an_idle_partition_commits_past_a_transaction_marker(fake: FakeConsumer) -> None:
    tp = TP("t", 0)
    engine, task = await running(fake)
    try:
        await fake.assign(tp)
        # A transaction's records at 0 and 1, its commit marker at 2: the
        # fetch hands out the records and moves the position past the marker.
        fake.positions[tp] = 3
        fake.queue(consumer_record(0), consumer_record(1))
        await until(lambda: fake.committed.get(tp) == 3)
    finally:
        engine.request_stop()
        assert await task == 0
