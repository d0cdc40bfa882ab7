"""Dispatch ordering with an in-test processor (pure scheduling logic)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.config import Ordering
from consumer.engine.dispatch import MAX_RUN, Dispatcher
from consumer.engine.flow import FlowControl
from consumer.engine.partition import PartitionState
from consumer.types import TP, Done, DoneRun, Record, RecordProcessor
from tests.support.records import consumer_record
from tests.support.waiting import until


class Recorder(RecordProcessor):
    def __init__(self, slow_keys: Sequence[bytes] = (), gate: asyncio.Event | None = None):
        self.seen: list[tuple[int, bytes | None, int]] = []
        self.slow_keys = set(slow_keys)
        self.gate = gate or asyncio.Event()
        self.running = 0
        self.peak = 0

    async def process(self, record: Record, done: Done) -> None:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            if record.key in self.slow_keys:
                await self.gate.wait()
            else:
                await asyncio.sleep(0)
            self.seen.append((record.partition, record.key, record.offset))
            done(record)
        finally:
            self.running -= 1

    async def flush(self) -> None:
        return None

    async def close(self) -> None:
        return None


def _ignore(exc: BaseException) -> None:
    raise AssertionError(f"unexpected processing failure: {exc!r}")


def states(n: int) -> tuple[FlowControl, list[PartitionState]]:
    flow = FlowControl(10_000, 10**9)
    return flow, [PartitionState(TP("t", p), flow) for p in range(n)]


async def test_key_ordering_is_sequential_per_key_and_a_slow_key_blocks_only_itself() -> None:
    errors: list[BaseException] = []
    proc = Recorder(slow_keys=[b"slow"])
    flow, (s0, s1) = states(2)
    dispatcher = Dispatcher(proc, Ordering.KEY, 4, errors.append)
    await dispatcher.start()
    try:
        batch0 = [consumer_record(i, partition=s0.tp.partition, key=[b"a", b"b", b"slow"][i % 3])
                  for i in range(30)]
        batch1 = [consumer_record(i, partition=s1.tp.partition, key=[b"a", b"c"][i % 2])
                  for i in range(30)]
        for state, batch in ((s0, batch0), (s1, batch1)):
            state.deliver(batch)
            dispatcher.submit(state, batch)
        # Everything but the slow key completes while the slow key is stuck.
        await until(lambda: len(proc.seen) == 50)
        assert all(key != b"slow" for _, key, _ in proc.seen)
        proc.gate.set()
        await until(lambda: len(proc.seen) == 60)
    finally:
        await dispatcher.close()
    assert errors == []
    for partition in (0, 1):
        for key in (b"a", b"b", b"c", b"slow"):
            offsets = [o for p, k, o in proc.seen if p == partition and k == key]
            assert offsets == sorted(offsets)
    assert flow.messages == 0
    assert s0.tracker.committable == 30
    assert s1.tracker.committable == 30


async def test_partition_ordering_never_runs_one_partition_twice_at_once() -> None:
    proc = Recorder()
    _, sts = states(3)
    dispatcher = Dispatcher(proc, Ordering.PARTITION, 8, _ignore)
    await dispatcher.start()
    try:
        for round_ in range(5):
            for state in sts:
                batch = [consumer_record(round_ * 10 + i, partition=state.tp.partition, key=None)
                         for i in range(10)]
                state.deliver(batch)
                dispatcher.submit(state, batch)
        await until(lambda: len(proc.seen) == 150)
    finally:
        await dispatcher.close()
    for p in range(3):
        offsets = [o for q, _, o in proc.seen if q == p]
        assert offsets == list(range(50))
    assert proc.peak <= 3


async def test_unordered_uses_the_pool_and_keyless_records_are_unordered_in_key_mode() -> None:
    gate = asyncio.Event()
    proc = Recorder(slow_keys=[None], gate=gate)  # type: ignore[list-item]
    _, (state,) = states(1)
    dispatcher = Dispatcher(proc, Ordering.KEY, 4, _ignore)
    await dispatcher.start()
    try:
        batch = [consumer_record(i, partition=state.tp.partition, key=None) for i in range(8)]
        state.deliver(batch)
        dispatcher.submit(state, batch)
        await until(lambda: proc.running == 4)  # spread over every worker
        gate.set()
        await until(lambda: len(proc.seen) == 8)
    finally:
        await dispatcher.close()
    assert state.tracker.committable == 8


async def test_cancel_drops_queued_runs_of_revoked_partitions_only() -> None:
    gate = asyncio.Event()
    proc = Recorder(slow_keys=[b"k"], gate=gate)
    _, (s0, s1) = states(2)
    dispatcher = Dispatcher(proc, Ordering.PARTITION, 1, _ignore)
    await dispatcher.start()
    try:
        for state in (s0, s1):
            batch = [consumer_record(i, partition=state.tp.partition, key=b"k") for i in range(5)]
            state.deliver(batch)
            dispatcher.submit(state, batch)
        await until(lambda: proc.running == 1)  # s0's run holds the only worker
        s1.abandon()
        assert dispatcher.cancel({s1}) == 5
        assert s1.in_flight == 0
        gate.set()
        await until(lambda: len(proc.seen) == 5)
    finally:
        await dispatcher.close()
    assert {p for p, _, _ in proc.seen} == {0}
    assert s1.tracker.committable is None  # nothing of it may be committed


async def test_cancel_drops_runs_that_idle_workers_were_woken_for_but_not_started() -> None:
    proc = Recorder()
    _, (s0,) = states(1)
    dispatcher = Dispatcher(proc, Ordering.KEY, 4, _ignore)
    await dispatcher.start()
    try:
        await asyncio.sleep(0)  # every worker idle, waiting for work
        batch = [consumer_record(i, partition=s0.tp.partition, key=b"k%d" % (i % 3))
                 for i in range(9)]
        s0.deliver(batch)
        dispatcher.submit(s0, batch)  # wakes workers, which have not run yet
        s0.abandon()
        assert dispatcher.cancel({s0}) == 9
        assert s0.in_flight == 0
        await asyncio.sleep(0.05)
        assert proc.seen == []
        assert dispatcher.busy == 0
    finally:
        await dispatcher.close()


async def test_a_processor_failure_is_reported_and_the_record_stays_undone() -> None:
    class Failing(Recorder):
        async def process(self, record: Record, done: Done) -> None:
            raise RuntimeError("breaker open")

    errors: list[BaseException] = []
    _, (state,) = states(1)
    dispatcher = Dispatcher(Failing(), Ordering.PARTITION, 2, errors.append)
    await dispatcher.start()
    try:
        batch = [consumer_record(i, partition=state.tp.partition, key=None) for i in range(3)]
        state.deliver(batch)
        dispatcher.submit(state, batch)
        await until(lambda: bool(errors))
    finally:
        await dispatcher.close()
    assert isinstance(errors[0], RuntimeError)
    assert state.tracker.committable is None
    assert state.in_flight == 1  # the failed one; the rest were released


class RunRecorder(RecordProcessor):
    """Takes whole runs; records each call's (partition, keys, offsets)."""

    takes_runs = True

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.calls: list[list[Record]] = []
        self.gate = gate
        self.running: set[tuple[int, bytes]] = set()
        self.overlap = False

    async def process(self, record: Record, done: Done) -> None:
        raise AssertionError("a run-taking processor gets runs")

    async def process_run(self, records: Sequence[Record], done: DoneRun) -> None:
        keys = {(r.partition, r.key) for r in records if r.key is not None}
        self.overlap = self.overlap or bool(keys & self.running)
        self.running |= keys
        try:
            if self.gate is not None:
                await self.gate.wait()
            await asyncio.sleep(0)
            self.calls.append(list(records))
            done(records)
        finally:
            self.running -= keys

    async def flush(self) -> None:
        return None

    async def close(self) -> None:
        return None


async def test_key_mode_packs_keys_into_long_runs_and_keeps_each_key_sequential() -> None:
    proc = RunRecorder()
    _, (state,) = states(1)
    dispatcher = Dispatcher(proc, Ordering.KEY, 4, _ignore)
    await dispatcher.start()
    try:
        offset = 0
        for _ in range(6):  # later fetches find some keys still busy
            batch = [consumer_record(offset + i, partition=state.tp.partition,
                                     key=b"k%d" % ((offset + i) // 3 % 200))
                     for i in range(900)]
            offset += len(batch)
            state.deliver(batch)
            dispatcher.submit(state, batch)
        await until(lambda: sum(len(c) for c in proc.calls) == offset)
    finally:
        await dispatcher.close()
    assert not proc.overlap  # a key is never in two runs at once
    for call in proc.calls:
        assert [r.offset for r in call] == sorted(r.offset for r in call)
        assert len(call) <= MAX_RUN
    order: dict[bytes | None, list[int]] = {}
    for call in proc.calls:
        for r in call:
            order.setdefault(r.key, []).append(r.offset)
    assert all(offsets == sorted(offsets) for offsets in order.values())
    assert len(proc.calls) < 200  # packs, not one run per key
    assert state.tracker.committable == offset
    assert state.in_flight == 0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.sampled_from([b"a", b"b", b"c", b"d", None]), min_size=1,
                         max_size=150), min_size=1, max_size=6),
       st.integers(1, 5), st.booleans())
def test_packed_key_runs_keep_every_key_sequential_and_process_each_record_once(
    fetches: list[list[bytes | None]], concurrency: int, cancel_last: bool,
) -> None:
    async def scenario() -> None:
        proc = RunRecorder()
        _, (state, other) = states(2)
        dispatcher = Dispatcher(proc, Ordering.KEY, concurrency, _ignore)
        await dispatcher.start()
        offset = 0
        try:
            for keys in fetches:
                for st_ in (state, other):
                    batch = [consumer_record(offset + i, partition=st_.tp.partition, key=k)
                             for i, k in enumerate(keys)]
                    st_.deliver(batch)
                    dispatcher.submit(st_, batch)
                offset += len(keys)
            dropped = dispatcher.cancel({other}) if cancel_last else 0
            await until(lambda: state.in_flight == 0 and other.in_flight == 0)
        finally:
            await dispatcher.close()
        assert not proc.overlap
        seen = [r for call in proc.calls for r in call]
        assert len(seen) + dropped == 2 * offset
        assert len({(r.partition, r.offset) for r in seen}) == len(seen)
        per_key: dict[tuple[int, bytes], list[int]] = {}
        for r in seen:
            if r.key is not None:
                per_key.setdefault((r.partition, r.key), []).append(r.offset)
        assert all(o == sorted(o) for o in per_key.values())
        assert state.tracker.committable == offset

    asyncio.run(scenario())


async def test_the_loop_polls_between_any_two_chunks() -> None:
    """Processors that never suspend (the store path) must not chain their
    chunks in one loop iteration: a coroutine that ticks once per iteration
    ticks between any two chunk starts."""
    log: list[str] = []

    class Busy(RecordProcessor):
        takes_runs = True

        async def process(self, record: Record, done: Done) -> None:
            raise AssertionError("runs only")

        async def process_run(self, records: Sequence[Record], done: DoneRun) -> None:
            log.append("chunk")
            done(records)  # no await that suspends: CPU-bound work

        async def flush(self) -> None:
            return None

        async def close(self) -> None:
            return None

    stop = False

    async def ticker() -> None:
        while not stop:
            log.append("tick")
            await asyncio.sleep(0)

    _, sts = states(3)
    dispatcher = Dispatcher(Busy(), Ordering.UNORDERED, 8, _ignore)
    await dispatcher.start()
    tick = asyncio.create_task(ticker())
    try:
        for state in sts:
            batch = [consumer_record(i, partition=state.tp.partition, key=None)
                     for i in range(3 * MAX_RUN)]
            state.deliver(batch)
            dispatcher.submit(state, batch)
        await until(lambda: all(s.in_flight == 0 for s in sts))
    finally:
        stop = True
        await tick
        await dispatcher.close()
    chunks = [i for i, entry in enumerate(log) if entry == "chunk"]
    assert len(chunks) >= 9
    assert all(b - a > 1 for a, b in pairwise(chunks))  # a tick between any two
