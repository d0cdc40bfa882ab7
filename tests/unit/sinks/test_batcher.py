"""Batcher against an in-memory fake sink: triggers, retry, bisection, futures."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import pytest

from consumer.config import Settings
from consumer.errors import Fenced, PartlyWritten, SinkError
from consumer.sinks.base import Row
from consumer.sinks.batcher import Batcher, RowsRefused


def row(i: int, **data: object) -> Row:
    return Row.build(id=f"e{i}", type="order.created", version=1,
               occurred_at=datetime(2026, 1, 1, tzinfo=UTC), data={"n": i, **data},
               source=None, topic="t", partition=0, offset=i, key=None)


class FakeSink:
    """Rejects rows whose id is in `reject` (data error, whole batch), and
    fails the first `outage` writes as retriable."""

    name = "fake"

    def __init__(self, reject: set[str] = frozenset(), outage: int = 0,  # type: ignore[assignment]
                 crash: int = 0) -> None:
        self.reject = reject
        self.outage = outage
        self.crash = crash
        self.batches: list[list[str]] = []
        self.attempts = 0
        self.max_writes = 1

    @property
    def written(self) -> list[str]:
        return [i for batch in self.batches for i in batch]

    async def open(self) -> None:
        return None

    async def write(self, rows: Sequence[Row]) -> None:
        self.attempts += 1
        await asyncio.sleep(0)
        if self.outage:
            self.outage -= 1
            raise SinkError("down", retriable=True)
        if self.crash:
            self.crash -= 1
            raise RuntimeError("sink bug")
        if any(r.id in self.reject for r in rows):
            raise SinkError("bad row", retriable=False)
        self.batches.append([r.id for r in rows])

    async def close(self) -> None:
        return None

    async def healthy(self) -> bool:
        return True


def settings(**kw: object) -> Settings:
    base: dict[str, object] = {"batch_max_items": 1_000, "batch_max_bytes": 10_000_000,
                               "batch_max_latency": 60.0, "retry_base_delay": 0.0,
                               "retry_max_delay": 0.0, "retry_max_attempts": 3,
                               "sink_retry_base_delay": 0.05, "sink_retry_max_delay": 0.05}
    base.update(kw)
    return Settings(**base)  # type: ignore[arg-type]


async def close_cut_short(batcher: Batcher) -> None:
    """A close cancelled midway (a shutdown deadline): it raises CancelledError."""
    close = asyncio.create_task(batcher.close())
    await asyncio.sleep(0.05)
    close.cancel()
    with pytest.raises(asyncio.CancelledError):
        await close


async def started(sink: FakeSink, **kw: object) -> Batcher:
    batcher = Batcher(sink, settings(**kw))
    await batcher.start()
    return batcher


async def test_max_items_flushes_without_waiting_for_latency() -> None:
    sink = FakeSink()
    batcher = await started(sink, batch_max_items=3)
    futures = [batcher.submit(row(i)) for i in range(3)]
    async with asyncio.timeout(2):
        await asyncio.gather(*futures)
    assert sink.batches == [["e0", "e1", "e2"]]
    await batcher.close()


async def test_max_bytes_flushes() -> None:
    sink = FakeSink()
    one = row(0).size()
    batcher = await started(sink, batch_max_bytes=2 * one)
    futures = [batcher.submit(row(i)) for i in range(2)]
    async with asyncio.timeout(2):
        await asyncio.gather(*futures)
    assert sink.written == ["e0", "e1"]
    await batcher.close()


async def test_max_latency_flushes_a_lone_row() -> None:
    sink = FakeSink()
    batcher = await started(sink, batch_max_latency=0.05)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    async with asyncio.timeout(2):
        await batcher.submit(row(0))
    assert loop.time() - t0 >= 0.04
    assert sink.written == ["e0"]
    await batcher.close()


async def test_flush_writes_what_is_buffered() -> None:
    sink = FakeSink()
    batcher = await started(sink)
    futures = [batcher.submit(row(i)) for i in range(5)]
    await batcher.flush()
    assert all(f.done() for f in futures)
    assert sink.written == [f"e{i}" for i in range(5)]
    await batcher.flush()  # nothing buffered: returns at once
    await batcher.close()


async def test_rows_beyond_max_items_are_written_in_chunks_in_order() -> None:
    sink = FakeSink()
    batcher = await started(sink, batch_max_items=4)
    futures = [batcher.submit(row(i)) for i in range(10)]
    async with asyncio.timeout(2):
        await batcher.flush()
        await asyncio.gather(*futures)
    assert sink.written == [f"e{i}" for i in range(10)]
    assert all(len(b) <= 4 for b in sink.batches)
    await batcher.close()


async def write_hundred(sink: FakeSink,
                        ) -> tuple[Batcher, dict[str, asyncio.Future[None]], set[str]]:
    """Rows e0..e99 through a batcher of 100-row batches: the batcher, each
    row's future, and the rows whose future failed."""
    batcher = await started(sink, batch_max_items=100)
    futures = {f"e{i}": batcher.submit(row(i)) for i in range(100)}
    async with asyncio.timeout(5):
        results = await asyncio.gather(*futures.values(), return_exceptions=True)
    return batcher, futures, {rid for rid, res in zip(futures, results, strict=True)
                              if res is not None}


@pytest.mark.parametrize("bad", [{"e0"}, {"e57"}, {"e3", "e4"}, {"e10", "e90", "e99"}])
async def test_bisection_isolates_exactly_the_bad_rows(bad: set[str]) -> None:
    sink = FakeSink(reject=bad)
    batcher, futures, failed = await write_hundred(sink)
    assert failed == bad
    for rid in bad:
        exc = futures[rid].exception()
        assert isinstance(exc, SinkError)
        assert not exc.retriable
    assert sorted(sink.written) == sorted(set(futures) - bad)
    assert len(sink.written) == len(set(sink.written))  # each good row once
    await batcher.close()


class RowByRowSink(FakeSink):
    """Stores each row on its own, like the Kafka sink: refuses the rows in
    `reject` for good, fails the rows in `flaky` once as retriable, and says
    which rows of a failed batch it stored (`PartlyWritten`)."""

    def __init__(self, reject: set[str], flaky: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        super().__init__(reject=reject)
        self.flaky = set(flaky)
        self.sent: list[str] = []

    async def write(self, rows: Sequence[Row]) -> None:
        self.attempts += 1
        await asyncio.sleep(0)
        stored, retry = [], False
        for i, r in enumerate(rows):
            self.sent.append(r.id)
            if r.id in self.flaky:
                self.flaky.discard(r.id)
                retry = True
            elif r.id not in self.reject:
                stored.append(i)
                self.batches.append([r.id])
        if len(stored) < len(rows):
            raise PartlyWritten("some rows failed", stored, retriable=retry)


@pytest.mark.parametrize(("bad", "flaky"), [({"e0"}, set()), ({"e57"}, set()),
                                            ({"e3", "e4"}, {"e5"}),
                                            ({"e10", "e90", "e99"}, {"e1", "e50"}),
                                            (set(), {"e7"})])
async def test_a_partly_written_batch_never_sends_a_stored_row_again(
        bad: set[str], flaky: set[str]) -> None:
    sink = RowByRowSink(bad, flaky)
    batcher, futures, failed = await write_hundred(sink)
    assert failed == bad
    for rid in bad:
        exc = futures[rid].exception()
        assert isinstance(exc, RowsRefused)
    assert sorted(sink.written) == sorted(set(futures) - bad)
    # Stored rows are sent once; refused and flaky ones again only while unsettled.
    assert len(sink.written) == len(set(sink.written))
    assert all(sink.sent.count(rid) == 1 for rid in set(futures) - bad - flaky)
    assert batcher.writing_ok
    await batcher.close()


async def test_retriable_errors_are_retried_not_bisected() -> None:
    sink = FakeSink(outage=4)
    batcher = await started(sink, batch_max_items=10)
    futures = [batcher.submit(row(i)) for i in range(10)]
    async with asyncio.timeout(5):
        await asyncio.gather(*futures)
    assert sink.batches == [[f"e{i}" for i in range(10)]]
    assert sink.attempts == 5
    assert batcher.writing_ok
    await batcher.close()


async def test_unexpected_errors_retry_then_bisect() -> None:
    sink = FakeSink(crash=3)  # attempts 1-3 crash: max_attempts=3 → bisect
    batcher = await started(sink, batch_max_items=4)
    futures = [batcher.submit(row(i)) for i in range(4)]
    async with asyncio.timeout(5):
        await asyncio.gather(*futures)
    assert sorted(sink.written) == ["e0", "e1", "e2", "e3"]
    await batcher.close()


async def test_close_flushes_and_is_idempotent() -> None:
    sink = FakeSink()
    batcher = await started(sink)
    future = batcher.submit(row(1))
    await batcher.close()
    assert future.done()
    assert sink.written == ["e1"]
    await batcher.close()
    with pytest.raises(SinkError) as info:
        batcher.submit(row(2))
    assert info.value.retriable


async def test_cancelled_close_fails_unwritten_rows_as_retriable() -> None:
    sink = FakeSink(outage=10**9)  # the sink never comes back
    batcher = await started(sink, batch_max_items=1)
    future = batcher.submit(row(1))
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await batcher.close()
    exc = future.exception()
    assert isinstance(exc, SinkError)
    assert exc.retriable
    assert not batcher.writing_ok


async def test_submit_before_start_raises() -> None:
    batcher = Batcher(FakeSink(), settings())
    with pytest.raises(SinkError):
        batcher.submit(row(0))


async def test_metrics_count_batches_rows_errors_and_poison() -> None:
    from consumer.observability.metrics import Metrics

    metrics = Metrics()
    sink = FakeSink(reject={"e1"}, outage=1)
    batcher = Batcher(sink, settings(batch_max_items=4), metrics)
    await batcher.start()
    futures = [batcher.submit(row(i)) for i in range(4)]
    async with asyncio.timeout(5):
        await asyncio.gather(*futures, return_exceptions=True)
    await batcher.close()
    value = metrics.registry.get_sample_value
    assert value("consumer_sink_rows_written_total", {"sink": "fake"}) == 3
    assert value("consumer_sink_poison_rows_total", {"sink": "fake"}) == 1
    assert value("consumer_sink_errors_total", {"sink": "fake", "retriable": "true"}) == 1
    assert (value("consumer_sink_errors_total", {"sink": "fake", "retriable": "false"})
            or 0) >= 1
    assert (value("consumer_sink_batch_rows_count", {"sink": "fake"}) or 0) >= 2


@pytest.mark.parametrize("writes", [1, 3])
@pytest.mark.parametrize("bad", [set(), {"e0"}, {"e57"}, {"e10", "e11", "e99"}])
async def test_a_unit_spanning_batches_settles_once_with_its_refused_rows(
        bad: set[str], writes: int) -> None:
    sink = FakeSink(reject=bad)
    sink.max_writes = writes
    batcher = await started(sink, batch_max_items=16)
    before = batcher.submit(row(1_000))
    unit = batcher.submit_many([row(i) for i in range(100)])
    after = batcher.submit(row(1_001))
    async with asyncio.timeout(5):
        results = await asyncio.gather(before, unit, after, return_exceptions=True)
    assert results[0] is None
    assert results[2] is None
    if not bad:
        assert results[1] is None
    else:
        exc = results[1]
        assert isinstance(exc, RowsRefused)
        assert not exc.retriable
        assert exc.indexes == tuple(sorted(int(rid[1:]) for rid in bad))
    assert sorted(sink.written) == sorted({f"e{i}" for i in range(100)} - bad
                                          | {"e1000", "e1001"})
    assert all(len(b) <= 16 for b in sink.batches)
    await batcher.close()


async def test_an_unwritten_unit_fails_retriable_on_close_and_an_empty_one_is_done() -> None:
    sink = FakeSink(outage=10**6)
    batcher = await started(sink, batch_max_items=4)
    empty = batcher.submit_many([])
    assert empty.done()
    assert empty.exception() is None
    unit = batcher.submit_many([row(i) for i in range(10)])
    await asyncio.sleep(0.05)
    await close_cut_short(batcher)
    exc = unit.exception()
    assert isinstance(exc, SinkError)
    assert exc.retriable


class GatedSink(FakeSink):
    """Every write waits for `gate`; counts the writes running at once."""

    def __init__(self, max_writes: int | None) -> None:
        super().__init__()
        if max_writes is not None:
            self.max_writes = max_writes
        self.gate = asyncio.Event()
        self.running = 0
        self.most = 0

    async def write(self, rows: Sequence[Row]) -> None:
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await self.gate.wait()
            await super().write(rows)
        finally:
            self.running -= 1


async def _until(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(2):
        while not check():  # noqa: ASYNC110 - polls the fake's counters, set by its writes
            await asyncio.sleep(0.005)


@pytest.mark.parametrize("writes", [None, 1, 2, 3])
async def test_writes_at_once_are_bounded_by_the_sink(writes: int | None) -> None:
    sink = GatedSink(writes)
    limit = writes or 1  # a sink that says nothing gets one write at a time
    batcher = await started(sink, batch_max_items=2)
    futures = [batcher.submit(row(i)) for i in range(12)]  # six batches
    await _until(lambda: sink.running == limit)
    await asyncio.sleep(0.05)  # more would have started by now
    assert sink.running == limit
    assert not any(f.done() for f in futures)
    sink.gate.set()
    async with asyncio.timeout(2):
        await asyncio.gather(*futures)
    assert sink.most == limit
    assert sorted(sink.written, key=lambda r: int(r[1:])) == [f"e{i}" for i in range(12)]
    if limit == 1:
        assert sink.written == [f"e{i}" for i in range(12)]  # in submission order
    await batcher.close()


async def test_flush_returns_once_every_write_in_progress_is_over() -> None:
    sink = GatedSink(2)
    batcher = await started(sink, batch_max_items=2)
    futures = [batcher.submit(row(i)) for i in range(5)]
    await _until(lambda: sink.running == 2)
    flush = asyncio.create_task(batcher.flush())
    await asyncio.sleep(0.05)
    assert not flush.done()
    sink.gate.set()
    async with asyncio.timeout(2):
        await flush
    assert all(f.done() for f in futures)
    assert sorted(sink.written) == sorted(f"e{i}" for i in range(5))
    await batcher.close()


async def test_cancelled_close_fails_every_write_in_progress_and_the_buffer() -> None:
    sink = GatedSink(2)  # the gate never opens
    batcher = await started(sink, batch_max_items=2)
    futures = [batcher.submit(row(i)) for i in range(7)]
    await _until(lambda: sink.running == 2)
    await close_cut_short(batcher)
    assert sink.running == 0  # the writes were cancelled, not left behind
    for future in futures:
        exc = future.exception()
        assert isinstance(exc, SinkError)
        assert exc.retriable
    assert sink.written == []


class CancelledInside(FakeSink):
    """Its first `cancelled` writes raise CancelledError from inside the sink
    (a driver's own future cancelled under it), the batcher not stopping."""

    def __init__(self, cancelled: int) -> None:
        super().__init__()
        self.cancelled = cancelled

    async def write(self, rows: Sequence[Row]) -> None:
        if self.cancelled:
            self.cancelled -= 1
            self.attempts += 1
            raise asyncio.CancelledError
        await super().write(rows)


@pytest.mark.parametrize("writes", [1, 2])
async def test_a_write_cancelled_inside_the_sink_is_retried_not_lost(writes: int) -> None:
    sink = CancelledInside(cancelled=3)
    sink.max_writes = writes
    batcher = await started(sink, batch_max_items=2)
    futures = [batcher.submit(row(i)) for i in range(4)]
    async with asyncio.timeout(2):
        await asyncio.gather(*futures)
        await batcher.flush()
    assert sorted(sink.written) == [f"e{i}" for i in range(4)]
    assert batcher.writing_ok
    await batcher.close()


async def test_flush_returns_when_the_batcher_dies_while_it_writes() -> None:
    sink = GatedSink(2)  # the gate never opens
    batcher = await started(sink, batch_max_items=100)
    futures = [batcher.submit(row(i)) for i in range(3)]
    flush = asyncio.create_task(batcher.flush())
    await _until(lambda: sink.running == 1)
    await close_cut_short(batcher)
    async with asyncio.timeout(1):
        await flush  # served or not, a flush caller is never left waiting
    assert all(isinstance(f.exception(), SinkError) for f in futures)


async def test_ready_again_only_when_no_write_is_failing() -> None:
    class OneDown(FakeSink):
        """Batches holding e0 fail as retriable until `up` is set."""

        def __init__(self) -> None:
            super().__init__()
            self.max_writes = 2
            self.up = False

        async def write(self, rows: Sequence[Row]) -> None:
            if not self.up and any(r.id == "e0" for r in rows):
                self.attempts += 1
                await asyncio.sleep(0)
                raise SinkError("down for e0", retriable=True)
            await super().write(rows)

    sink = OneDown()
    batcher = await started(sink, batch_max_items=1, sink_retry_base_delay=0.01,
                            sink_retry_max_delay=0.01)
    stuck = batcher.submit(row(0))
    await _until(lambda: sink.attempts >= 2)
    others = [batcher.submit(row(i)) for i in range(1, 6)]  # written by the other write
    async with asyncio.timeout(2):
        await asyncio.gather(*others)
    assert not batcher.writing_ok  # e0's write still fails, whatever the other did
    assert not stuck.done()
    sink.up = True
    async with asyncio.timeout(2):
        await stuck
    assert batcher.writing_ok
    await batcher.close()


class FencingSink(FakeSink):
    """Exactly-once: writes the rows of partition 0 and fences partition 1's,
    like the PostgreSQL sink when another member claimed partition 1."""

    async def write(self, rows: Sequence[Row]) -> None:
        self.attempts += 1
        await asyncio.sleep(0)
        fenced = [i for i, r in enumerate(rows) if r.partition == 1]
        written = [i for i, r in enumerate(rows) if r.partition != 1]
        self.batches.append([rows[i].id for i in written])
        if fenced:
            raise Fenced("fenced", written=written, fenced=fenced)


async def test_fenced_rows_are_never_written_and_their_units_stay_in_flight() -> None:
    sink = FencingSink()
    batcher = await started(sink, batch_max_items=10)
    ours = batcher.submit_many([row(i) for i in range(3)])
    theirs = batcher.submit_many([row(i)._replace(partition=1, id=f"p1-{i}") for i in range(3)])
    async with asyncio.timeout(5):
        await batcher.flush()
        await asyncio.wait([ours, theirs])
    assert ours.result() is None
    exc = theirs.exception()
    assert isinstance(exc, Fenced)
    assert exc.retriable  # left in flight by the pipeline, never dead-lettered
    assert sink.written == ["e0", "e1", "e2"]
    assert sink.attempts == 1  # the fenced rows are not tried again
    await batcher.close()


async def test_exactly_once_keeps_a_records_rows_in_one_batch() -> None:
    sink = FakeSink()
    batcher = Batcher(sink, settings(batch_max_items=2, sink_url="postgresql://u@h/db",
                                     delivery="exactly_once"))
    await batcher.start()
    # Two units of one run, emitted one after the other: record 0's rows sit apart.
    first = batcher.submit_many([row(0), row(1)])
    second = batcher.submit_many([row(0)._replace(id="e0-b"), row(2)])
    async with asyncio.timeout(5):
        await batcher.flush()
        await asyncio.gather(first, second)
    assert [sorted(b) for b in sink.batches] == [["e0", "e0-b", "e1", "e2"]]
    await batcher.close()
