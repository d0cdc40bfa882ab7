"""Engine bookkeeping that needs no broker: the drain deadline against a
processor whose flush never returns, the commit counter across rebalances,
and lost partitions fenced without a drain. (The consumer is built but never
started.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest
from aiokafka.structs import ConsumerRecord

from consumer.config import load_settings
from consumer.engine.engine import Engine
from consumer.observability.metrics import Metrics
from consumer.types import TP, Done, Record, RecordProcessor


class StuckSink(RecordProcessor):
    """A processor whose flush waits forever, like a batcher whose sink is down."""

    async def process(self, record: Record, done: Done) -> None:
        return None

    async def flush(self) -> None:
        await asyncio.Event().wait()

    async def close(self) -> None:
        return None


def rec(offset: int) -> Record:
    return ConsumerRecord("t", 0, offset, 0, 0, b"k", b"v", None, 1, 1, [])


@pytest.fixture
async def eng() -> AsyncIterator[Engine]:
    settings = load_settings(bootstrap_servers="127.0.0.1:9", topics=["t"], sink_url="none")
    engine = Engine(settings, StuckSink(), Metrics())
    yield engine
    await engine.close()


async def test_drain_gives_up_at_its_deadline_even_if_flush_hangs(eng: Engine) -> None:
    tp = TP("t", 0)
    await eng.on_assigned({tp})
    state = eng._states[tp]
    state.deliver([rec(0)])  # in flight, never done
    began = time.monotonic()
    assert not await eng._drain({state}, 0.3)
    assert time.monotonic() - began < 2.0


async def test_drain_stops_at_once_on_a_second_signal(eng: Engine) -> None:
    tp = TP("t", 0)
    await eng.on_assigned({tp})
    state = eng._states[tp]
    state.deliver([rec(0)])
    asyncio.get_running_loop().call_later(0.1, eng.request_stop, True)
    began = time.monotonic()
    assert not await eng._drain({state}, 60)
    assert time.monotonic() - began < 2.0


async def test_completed_count_never_decreases_across_rebalances(eng: Engine) -> None:
    tp = TP("t", 0)
    await eng.on_assigned({tp})
    first = eng._states[tp]
    records = [rec(i) for i in range(3)]
    first.deliver(records)
    for record in records:
        first.done(record)
    assert eng._completed() == 3
    await eng.on_revoked({tp})  # nothing assigned in the client: no commit is sent
    await eng.on_assigned({tp})
    assert eng._completed() == 3
    second = eng._states[tp]
    second.deliver([rec(3)])
    second.done(rec(3))
    assert eng._completed() == 4


async def test_lost_partitions_are_fenced_at_once_not_drained(eng: Engine) -> None:
    # Evicted while frozen: aiokafka reset our generation, then revokes. The
    # partitions are another member's already; draining would redo its work.
    tp = TP("t", 0)
    await eng.on_assigned({tp})
    state = eng._states[tp]
    state.deliver([rec(0), rec(1)])  # in flight; this processor never completes them
    eng._consumer._coordinator = SimpleNamespace(generation=-1)
    try:
        began = time.monotonic()
        await eng.on_revoked({tp})
        assert time.monotonic() - began < 2.0  # not the 36 s revocation deadline
    finally:
        eng._consumer._coordinator = None
    assert tp not in eng._states
    state.done(rec(0))  # a late completion of the zombie
    assert state.pending_commit() is None
    assert state.in_flight == 1


async def test_state_and_the_readiness_reason_follow_the_stop(eng: Engine) -> None:
    assert eng.state == "starting"
    assert eng.unready_reason() == "starting: not consuming yet"
    eng._started = True  # what run() sets once subscribed
    assert (eng.state, eng.unready_reason()) == ("consuming", None)
    await eng.on_assigned({TP("t", 0)})
    eng._states[TP("t", 0)].deliver([rec(0), rec(1)])
    eng.request_stop()
    assert eng.state == "draining"
    assert eng.unready_reason() == ("draining: stopping, 2 message(s) in flight to finish "
                                    "before the last commit")
    eng.request_stop(immediate=True)  # a second signal
    assert eng.state == "stopping"
    await eng.close()
    assert eng.state == "stopped"
