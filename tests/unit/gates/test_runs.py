"""The run path: one validation pass, one handler call and one unit of rows
per run, with the per-record outcome kept for every record — a poison record
is split out and retried or dead-lettered alone, the rest complete."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.errors import CircuitOpenError, FatalError, TransientError
from consumer.gates.context import Context, RunContext, batch_handler
from consumer.gates.validation import validate_run
from consumer.handlers.store import store_batch
from consumer.types import Record
from schemas import validate
from tests.unit.gates.fakes import pipeline, record


class DoneRun:
    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def __call__(self, records: Sequence[Record]) -> None:
        self.calls.append([r.offset for r in records])

    @property
    def offsets(self) -> list[int]:
        return sorted(o for call in self.calls for o in call)


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_a_run_is_validated_stored_and_done_at_once() -> None:
    proc, batcher, publisher = pipeline(store_batch)
    done = DoneRun()
    async with proc:
        await proc.process_run([record(i) for i in range(5)], done)
        assert done.calls == []  # the rows are not written yet
        assert [r.offset for r, _ in batcher.rows] == [0, 1, 2, 3, 4]
        batcher.write_all()
        await settle()
    assert done.calls == [[0, 1, 2, 3, 4]]
    assert not publisher.sent


async def test_an_invalid_record_in_the_middle_is_dead_lettered_alone() -> None:
    proc, batcher, publisher = pipeline(store_batch)
    done = DoneRun()
    run = [record(0), record(1), record(2, value=b"{oops"), record(3), record(4)]
    async with proc:
        await proc.process_run(run, done)
        batcher.write_all()
        await settle()
    assert done.offsets == [0, 1, 2, 3, 4]
    assert [r.offset for r, _ in batcher.rows] == [0, 1, 3, 4]
    assert [h["dlq.original.offset"] for _, _, h in publisher.sent] == [b"2"]
    assert publisher.sent[0][2]["dlq.error.type"] == b"InvalidEvent"


async def test_a_row_the_sink_refuses_dead_letters_only_its_record() -> None:
    proc, batcher, publisher = pipeline(store_batch)
    done = DoneRun()
    async with proc:
        await proc.process_run([record(i) for i in range(4)], done)
        batcher.refuse(2)
        batcher.write_all()
        await settle()
    assert done.calls[0] == [0, 1, 3]
    assert done.offsets == [0, 1, 2, 3]
    assert [h["dlq.original.offset"] for _, _, h in publisher.sent] == [b"2"]
    assert publisher.sent[0][2]["dlq.error.type"] == b"RowsRefused"


@pytest.mark.parametrize("error", [TransientError("poison"), FatalError("poison")])
async def test_a_failing_batch_is_split_and_only_the_poison_record_fails(
    error: Exception,
) -> None:
    calls: list[tuple[list[int], int]] = []

    @batch_handler
    async def handler(events: Sequence[Any], ctx: RunContext) -> None:
        calls.append(([r.offset for r in ctx.records], ctx.attempt))
        if any(r.offset == 2 for r in ctx.records):
            raise error
        ctx.emit()

    proc, batcher, publisher = pipeline(handler, retry_max_attempts=3)
    done = DoneRun()
    async with proc:
        await proc.process_run([record(i) for i in range(5)], done)
        batcher.write_all()
        await settle()
    attempts = 3 if isinstance(error, TransientError) else 1
    assert calls == [([0, 1, 2, 3, 4], 1), ([0], 1), ([1], 1),
                     *[([2], n) for n in range(1, attempts + 1)], ([3], 1), ([4], 1)]
    assert done.offsets == [0, 1, 2, 3, 4]
    assert [h["dlq.original.offset"] for _, _, h in publisher.sent] == [b"2"]
    assert publisher.sent[0][2]["dlq.attempts"] == str(attempts).encode()
    assert sorted(r.offset for r, f in batcher.rows if f.done()) == [0, 1, 3, 4]


async def test_a_per_event_handler_gets_each_record_of_the_run_in_order() -> None:
    seen: list[int] = []

    async def handler(event: Any, ctx: Context) -> None:
        seen.append(ctx.offset)

    proc, _, _ = pipeline(handler)
    done = DoneRun()
    async with proc:
        await proc.process_run([record(i) for i in range(3)], done)
    assert seen == [0, 1, 2]
    assert done.calls == [[0], [1], [2]]


async def test_user_middleware_sees_each_event_of_a_batch_handler() -> None:
    seen: list[int] = []

    async def tag(ctx: Context, call_next: Any) -> None:
        seen.append(ctx.offset)
        await call_next(ctx)

    from consumer.config import Settings
    from consumer.pipeline import Pipeline
    from tests.unit.gates.fakes import FakeBatcher, FakePublisher

    batcher = FakeBatcher()
    proc = Pipeline(Settings(sink_url="none"), handler=store_batch, middleware=[tag],
                    batcher=batcher, publisher=FakePublisher())
    done = DoneRun()
    async with proc:
        await proc.process_run([record(i) for i in range(3)], done)
        batcher.write_all()
        await settle()
    assert seen == [0, 1, 2]
    assert done.offsets == [0, 1, 2]


async def test_an_invalid_run_trips_the_breaker() -> None:
    proc, _, publisher = pipeline(store_batch, dlq_breaker_consecutive=3)
    async with proc:
        with pytest.raises(CircuitOpenError):
            await proc.process_run([record(i, value=b"x") for i in range(3)], DoneRun())
        assert not proc.healthy()
    assert len(publisher.sent) == 3


async def test_rows_emitted_after_a_batch_handler_returned_are_refused() -> None:
    kept: list[RunContext] = []

    @batch_handler
    async def handler(events: Sequence[Any], ctx: RunContext) -> None:
        kept.append(ctx)

    proc, batcher, _ = pipeline(handler)
    done = DoneRun()
    async with proc:
        await proc.process_run([record(0), record(1)], done)
        with pytest.raises(RuntimeError):
            kept[0].emit()
    assert done.calls == [[0, 1]]
    assert batcher.rows == []


async def test_emit_picks_records_and_replaces_events() -> None:
    @batch_handler
    async def handler(events: Sequence[Any], ctx: RunContext) -> None:
        ctx.emit([events[2]], indexes=[0])
        with pytest.raises(ValueError, match="1 events for 2 records"):
            ctx.emit([events[0]], indexes=[0, 1])

    proc, batcher, _ = pipeline(handler)
    run = [record(i) for i in range(3)]
    async with proc:
        await proc.process_run(run, DoneRun())
    [(row, _)] = batcher.rows
    assert (row.offset, row.id) == (0, validate(run[2].value).id)


async def test_the_breaker_counts_a_run_in_its_order() -> None:
    # Three bad, one good, three bad: never five in a row, as per record.
    proc, batcher, publisher = pipeline(store_batch, dlq_breaker_consecutive=5)
    bad = [1, 1, 1, 0, 1, 1, 1]
    done = DoneRun()
    async with proc:
        await proc.process_run([record(i, value=b"x" if b else None)
                                for i, b in enumerate(bad)], done)
        assert proc.healthy()
        batcher.write_all()
        await settle()
    assert done.offsets == list(range(7))
    assert len(publisher.sent) == 6


async def test_a_split_run_settles_each_record_before_the_next_and_stops_at_a_trip() -> None:
    calls: list[list[int]] = []

    @batch_handler
    async def handler(events: Sequence[Any], ctx: RunContext) -> None:
        calls.append([r.offset for r in ctx.records])
        if any(r.offset in (1, 2) for r in ctx.records):
            raise FatalError("poison")
        ctx.emit()

    proc, batcher, publisher = pipeline(handler, dlq_breaker_consecutive=2)
    done = DoneRun()
    async with proc:
        with pytest.raises(CircuitOpenError):
            await proc.process_run([record(i) for i in range(6)], done)
        batcher.write_all()
        await settle()
    # The run, then each record alone until the breaker trips: the rest is
    # neither handled nor done, and none of its rows reach the sink.
    assert calls == [[0, 1, 2, 3, 4, 5], [0], [1], [2]]
    assert done.offsets == [0, 1, 2]
    assert [h["dlq.original.offset"] for _, _, h in publisher.sent] == [b"1", b"2"]
    assert [r.offset for r, _ in batcher.rows] == [0]


async def test_an_emit_from_a_split_record_after_its_handler_returned_is_refused() -> None:
    kept: list[RunContext] = []
    late: list[BaseException] = []

    @batch_handler
    async def handler(events: Sequence[Any], ctx: RunContext) -> None:
        if len(ctx.records) > 1:
            raise TransientError("split me")
        if ctx.records[0].offset == 0:
            kept.append(ctx)
            return
        try:  # record 0's handler returned: its late rows are refused
            kept[0].emit()
        except RuntimeError as exc:
            late.append(exc)

    proc, batcher, _ = pipeline(handler)
    done = DoneRun()
    async with proc:
        await proc.process_run([record(0), record(1)], done)
    assert late, "a late emit must fail loudly, not be silently ignored"
    assert batcher.rows == []
    assert done.offsets == [0, 1]


@given(st.lists(st.booleans(), max_size=40))
def test_validate_run_cuts_in_order(bad: list[bool]) -> None:
    run = [record(i, value=b"x" if b else None) for i, b in enumerate(bad)]
    segments = validate_run(run)
    assert [r for s in segments for r in s.records] == run
    for s in segments:
        if s.error is not None:
            assert len(s.records) == 1
            assert not s.events
        else:
            assert s.records
            assert [e.id for e in s.events] == [validate(r.value).id for r in s.records]
    errors = [s.error is not None for s in segments]
    assert sum(errors) == sum(bad)
    # Valid stretches are maximal: never two in a row.
    assert all(a or b for a, b in pairwise(errors))


async def test_a_batch_handler_that_emits_then_raises_writes_each_row_once() -> None:
    @batch_handler
    async def emit_then_fail_on_2(events: Sequence[Any], ctx: RunContext) -> None:
        ctx.emit()
        if any(r.offset == 2 for r in ctx.records):
            raise FatalError("after the emit")

    proc, batcher, publisher = pipeline(emit_then_fail_on_2)
    done = DoneRun()
    async with proc:
        await proc.process_run([record(i) for i in range(5)], done)
        batcher.write_all()
        await settle()
    # The whole-run call and the single call for record 2 failed: none of
    # their rows reached the batcher; each other record's row did, once.
    assert sorted(r.offset for r, _ in batcher.rows) == [0, 1, 3, 4]
    assert [h["dlq.original.offset"] for _, _, h in publisher.sent] == [b"2"]
    assert done.offsets == [0, 1, 2, 3, 4]


async def test_a_run_and_a_record_are_measured_by_the_same_gates() -> None:
    """One definition of each metric: a batch handler's run observes the
    processing time once per run and the attempts of what it handled, as a
    per-event handler's record does."""
    from consumer.config import Settings
    from consumer.observability.metrics import Metrics
    from consumer.pipeline import Pipeline
    from tests.unit.gates.fakes import FakeBatcher, FakePublisher

    @batch_handler
    async def handler(events: Sequence[Any], ctx: RunContext) -> None:
        if ctx.attempt == 1 and len(ctx.records) == 1 and ctx.records[0].offset == 1:
            raise TransientError("once")

    metrics = Metrics()
    proc = Pipeline(Settings(retry_base_delay=0.0, retry_max_delay=0.0, sink_url="none"),
                    metrics, handler=handler, batcher=FakeBatcher(), publisher=FakePublisher())
    done = DoneRun()
    async with proc:
        await proc.process_run([record(0), record(1), record(2)], done)  # handled whole
        await proc.process_run([record(1)], done)  # a run of one, retried once

    def value(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    assert done.offsets == [0, 1, 1, 2]
    assert value("consumer_processing_seconds_count", topic="t") == 2  # one per run
    assert value("consumer_handler_attempts_count") == 2  # the run, the record
    assert value("consumer_handler_attempts_sum") == 3  # 1 + 2
    assert value("consumer_retries_total", topic="t") == 1
    assert value("consumer_messages_total", topic="t", outcome="ok") == 4


async def test_each_record_of_a_split_run_is_logged_under_its_own_event_id() -> None:
    from consumer.observability.logging import correlation_id

    seen: list[tuple[int, str | None]] = []

    @batch_handler
    async def handler(events: Sequence[Any], ctx: RunContext) -> None:
        seen.append((len(ctx.records), correlation_id.get()))
        if len(ctx.records) > 1:
            raise TransientError("split me")

    proc, _, _ = pipeline(handler)
    run = [record(0), record(1)]
    async with proc:
        await proc.process_run(run, DoneRun())
    ids = [str(validate(r.value).id) for r in run]
    assert seen == [(2, None), (1, ids[0]), (1, ids[1])]
    assert correlation_id.get() is None


def test_the_chain_holds_each_gate_once_in_the_documented_order(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from consumer.config import Settings
    from consumer.gates.correlation import Correlation
    from consumer.gates.instruments import GateMetrics
    from consumer.gates.retry import Retry, RetryPolicy
    from consumer.gates.settle import Settle
    from consumer.gates.timeout import Timeout
    from consumer.gates.timing import Timing
    from consumer.gates.validation import Validation
    from consumer.pipeline import chain

    order: list[Any] = []
    real = chain.build_chain

    def recording(gates: Sequence[Any], end: Any) -> Any:
        order.extend(gates)
        return real(gates, end)

    async def tag(ctx: Context, call_next: Any) -> None:
        await call_next(ctx)

    settle_gate = Settle(None, None, GateMetrics(), group="g")  # type: ignore[arg-type]
    monkeypatch.setattr(chain, "build_chain", recording)
    takes_runs, _ = chain.compose(
        store_batch, [tag], settings=Settings(sink_url="none"), metrics=GateMetrics(),
        settle=settle_gate, policy=RetryPolicy(), timeout=1.0)
    assert not takes_runs  # user middleware sees one event at a time
    assert [type(g) for g in order[:2]] == [Timing, Validation]
    assert order[2] is chain.singles
    assert order[3] is settle_gate
    assert [type(g) for g in (order[4], order[5])] == [Correlation, Retry]
    assert type(order[-1]) is Timeout
    assert len(order) == 8  # the user middleware, adapted, between correlation and timeout
