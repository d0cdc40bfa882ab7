"""Pipeline routing: done only when rows are written or the dead-letter send
is acknowledged; retries in place; invalid events skip retries."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from consumer.errors import CircuitOpenError, FatalError, TransientError
from consumer.gates.context import Context
from tests.unit.gates.fakes import Done, emit_handler, pipeline, process, record


async def test_handler_without_emit_is_done_at_once() -> None:
    seen: list[Any] = []

    async def handler(event: Any, ctx: Context) -> None:
        seen.append((event.id, ctx.topic, ctx.offset, ctx.attempt))

    proc, _, publisher = pipeline(handler)
    done = Done()
    async with proc:
        await process(proc, record(3), done)
    assert done.offsets == [3]
    assert seen[0][1:] == ("t", 3, 1)
    assert not publisher.sent


async def test_emitted_rows_gate_done() -> None:
    proc, batcher, _ = pipeline(emit_handler)
    done = Done()
    async with proc:
        await process(proc, record(0), done)
        await process(proc, record(1), done)
        assert done.offsets == []  # written by nobody yet
        batcher.write_all()
        await asyncio.sleep(0)
        assert done.offsets == [0, 1]
        assert [r.offset for r, _ in batcher.rows] == [0, 1]


async def test_refused_row_is_dead_lettered_then_done() -> None:
    proc, batcher, publisher = pipeline(emit_handler)
    done = Done()
    async with proc:
        await process(proc, record(0), done)
        await process(proc, record(1), done)
        batcher.refuse(1)
        batcher.write_all()
        for _ in range(5):
            await asyncio.sleep(0)
        assert sorted(done.offsets) == [0, 1]
    assert len(publisher.sent) == 1
    assert publisher.sent[0][2]["dlq.error.type"] == b"RowsRefused"
    assert publisher.sent[0][2]["dlq.original.offset"] == b"1"


async def test_invalid_event_goes_straight_to_dlq() -> None:
    calls = 0

    async def handler(event: Any, ctx: Context) -> None:
        nonlocal calls
        calls += 1

    proc, _, publisher = pipeline(handler)
    done = Done()
    async with proc:
        await process(proc, record(7, value=b"{not json", key=b"kk",
                                  headers=[("trace", b"x")]), done)
    assert calls == 0
    assert done.offsets == [7]
    key, value, headers = publisher.sent[0]
    assert (key, value) == (b"kk", b"{not json")
    assert headers["dlq.error.type"] == b"InvalidEvent"
    assert headers["dlq.error.message"].startswith(b"invalid_json: ")
    assert headers["dlq.attempts"] == b"1"
    assert headers["trace"] == b"x"
    for name in ("dlq.original.topic", "dlq.original.partition", "dlq.original.timestamp",
                 "dlq.consumer.group", "dlq.error.stack", "dlq.first_failure",
                 "dlq.last_failure"):
        assert name in headers


async def test_transient_errors_recover_within_attempts() -> None:
    attempts: list[int] = []

    async def flaky(event: Any, ctx: Context) -> None:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise TransientError("blip")

    proc, _, publisher = pipeline(flaky, retry_max_attempts=3)
    done = Done()
    async with proc:
        await process(proc, record(0), done)
    assert attempts == [1, 2, 3]
    assert done.offsets == [0]
    assert not publisher.sent


async def test_fatal_error_is_not_retried() -> None:
    attempts: list[int] = []

    async def broken(event: Any, ctx: Context) -> None:
        attempts.append(ctx.attempt)
        raise FatalError("no such customer")

    proc, _, publisher = pipeline(broken)
    done = Done()
    async with proc:
        await process(proc, record(0), done)
    assert attempts == [1]
    assert publisher.sent[0][2]["dlq.error.type"] == b"FatalError"
    assert publisher.sent[0][2]["dlq.error.message"] == b"no such customer"
    assert done.offsets == [0]


async def test_exhausted_retries_carry_attempts_and_times() -> None:
    async def always(event: Any, ctx: Context) -> None:
        raise ValueError("boom")

    proc, _, publisher = pipeline(always, retry_max_attempts=4)
    done = Done()
    async with proc:
        await process(proc, record(0), done)
    headers = publisher.sent[0][2]
    assert headers["dlq.attempts"] == b"4"
    assert headers["dlq.error.type"] == b"ValueError"
    assert b"ValueError: boom" in headers["dlq.error.stack"]
    assert headers["dlq.first_failure"] <= headers["dlq.last_failure"]


async def test_fatal_on_setting_overrides_default() -> None:
    async def always(event: Any, ctx: Context) -> None:
        raise KeyError("x")

    proc, _, publisher = pipeline(always, fatal_on=["KeyError"])
    async with proc:
        await process(proc, record(0), Done())
    assert publisher.sent[0][2]["dlq.attempts"] == b"1"


async def test_timeout_is_transient() -> None:
    async def slow(event: Any, ctx: Context) -> None:
        if ctx.attempt == 1:
            await asyncio.sleep(5)

    proc, _, publisher = pipeline(slow, handler_timeout=0.05, retry_max_attempts=2)
    done = Done()
    async with proc:
        await process(proc, record(0), done)
    assert done.offsets == [0]
    assert not publisher.sent


async def test_unwritable_dlq_never_calls_done() -> None:
    proc, _, publisher = pipeline(fail_dlq=True)
    done = Done()
    await proc.start()
    task = asyncio.create_task(process(proc, record(0, value=b""), done))
    await asyncio.sleep(0.1)
    assert not task.done()  # the message stays in flight
    assert publisher.attempts > 1
    await proc.close()
    await task
    assert done.offsets == []


async def test_breaker_trips_on_consecutive_dead_letters() -> None:
    proc, _, publisher = pipeline(dlq_breaker_consecutive=3)
    done = Done()
    async with proc:
        await process(proc, record(0), done)
        await process(proc, record(1, value=b"x"), done)
        await process(proc, record(2, value=b"x"), done)
        assert proc.healthy()
        with pytest.raises(CircuitOpenError):
            await process(proc, record(3, value=b"x"), done)
        assert not proc.healthy()
        with pytest.raises(CircuitOpenError):
            await process(proc, record(4), done)
    assert done.offsets == [0, 1, 2, 3]
    assert len(publisher.sent) == 3


async def test_breaker_judges_good_messages_when_their_handler_returns() -> None:
    # Good messages wait for their batch; invalid ones are dead-lettered at
    # once. Alternating input must never look like a run of failures.
    proc, batcher, publisher = pipeline(emit_handler, dlq_breaker_consecutive=3)
    done = Done()
    async with proc:
        for offset in range(0, 20, 2):
            await process(proc, record(offset), done)
            await process(proc, record(offset + 1, value=b"x"), done)
        assert proc.healthy()
        batcher.write_all()
        await asyncio.sleep(0)
    assert sorted(done.offsets) == list(range(20))
    assert len(publisher.sent) == 10


async def test_user_middleware_wraps_each_attempt() -> None:
    calls: list[tuple[str, int]] = []

    class Tag:
        async def __call__(self, ctx: Context, call_next: Any) -> None:
            calls.append(("before", ctx.attempt))
            await call_next(ctx)

    async def flaky(event: Any, ctx: Context) -> None:
        if ctx.attempt == 1:
            raise TransientError("once")

    from consumer.config import Settings
    from consumer.pipeline import Pipeline
    from tests.unit.gates.fakes import FakeBatcher, FakePublisher

    proc = Pipeline(Settings(retry_base_delay=0.0, retry_max_delay=0.0), handler=flaky,
                    middleware=[Tag()], batcher=FakeBatcher(), publisher=FakePublisher())
    async with proc:
        await process(proc, record(0), Done())
    assert calls == [("before", 1), ("before", 2)]


async def test_metrics_are_counted() -> None:
    from consumer.config import Settings
    from consumer.observability.metrics import Metrics
    from consumer.pipeline import Pipeline
    from tests.unit.gates.fakes import FakeBatcher, FakePublisher

    async def flaky(event: Any, ctx: Context) -> None:
        if ctx.attempt == 1:
            raise TransientError("once")

    metrics = Metrics()
    proc = Pipeline(Settings(retry_base_delay=0.0, retry_max_delay=0.0, dlq_breaker_consecutive=1),
                    metrics, handler=flaky, batcher=FakeBatcher(), publisher=FakePublisher())
    async with proc:
        await process(proc, record(0), Done())
        with pytest.raises(CircuitOpenError):
            await process(proc, record(1, value=b""), Done())

    def value(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    assert value("consumer_messages_total", topic="t", outcome="ok") == 1
    assert value("consumer_messages_total", topic="t", outcome="invalid") == 1
    assert value("consumer_retries_total", topic="t") == 1
    assert value("consumer_dlq_messages_total", topic="t", reason="InvalidEvent") == 1
    assert value("consumer_dlq_breaker_open") == 1
    assert value("consumer_processing_seconds_count", topic="t") == 2


async def test_a_cancelled_error_raised_by_the_handler_is_a_failure_not_a_shutdown() -> None:
    async def handler(event: Any, ctx: Context) -> None:
        lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        lost.cancel()
        await lost  # someone else's cancelled future

    proc, _, publisher = pipeline(handler)
    done = Done()
    async with proc:
        await process(proc, record(4), done)
    assert done.offsets == [4]
    assert publisher.sent[0][2]["dlq.error.type"] == b"CancelledError"
    assert publisher.sent[0][2]["dlq.attempts"] == b"1"  # waiting would not un-cancel it


async def test_rows_emitted_after_the_handler_returned_are_refused() -> None:
    late: list[BaseException] = []
    kept: list[Context] = []

    async def handler(event: Any, ctx: Context) -> None:
        kept.append(ctx)

    proc, batcher, _ = pipeline(handler)
    done = Done()
    async with proc:
        await process(proc, record(2), done)
        try:
            kept[0].emit()
        except RuntimeError as exc:
            late.append(exc)
    assert done.offsets == [2]
    assert late, "a late emit must fail loudly, not be silently ignored"
    assert batcher.rows == []


async def test_rows_emitted_by_a_failed_attempt_are_never_written() -> None:
    async def emit_then_fail_once(event: Any, ctx: Context) -> None:
        ctx.emit(event)
        if ctx.attempt == 1:
            raise TransientError("after the emit")

    proc, batcher, publisher = pipeline(emit_then_fail_once, retry_max_attempts=3)
    done = Done()
    async with proc:
        await process(proc, record(0), done)
        assert len(batcher.rows) == 1  # the second attempt's row only
        batcher.write_all()
        await asyncio.sleep(0)
    assert done.offsets == [0]
    assert not publisher.sent


async def test_a_message_that_fails_every_attempt_is_dead_lettered_and_never_stored() -> None:
    async def emit_then_fail(event: Any, ctx: Context) -> None:
        ctx.emit(event)
        raise FatalError("after the emit")

    proc, batcher, publisher = pipeline(emit_then_fail)
    done = Done()
    async with proc:
        await process(proc, record(0), done)
    assert batcher.rows == []  # not both stored and dead-lettered
    assert done.offsets == [0]
    assert len(publisher.sent) == 1


async def test_rows_of_an_attempt_that_user_middleware_failed_are_never_written() -> None:
    """An attempt is the whole chain inside retry: a user middleware that
    raises after the handler returned fails it, and its rows are dropped."""
    from consumer.config import Settings
    from consumer.pipeline import Pipeline
    from tests.unit.gates.fakes import FakeBatcher, FakePublisher

    async def fail_after(ctx: Context, call_next: Any) -> None:
        await call_next(ctx)
        raise FatalError("after the handler")

    batcher, publisher = FakeBatcher(), FakePublisher()
    proc = Pipeline(Settings(sink_url="none"), handler=emit_handler, middleware=[fail_after],
                    batcher=batcher, publisher=publisher)
    done = Done()
    async with proc:
        await process(proc, record(0), done)
    assert batcher.rows == []
    assert done.offsets == [0]
    assert publisher.sent[0][2]["dlq.error.type"] == b"FatalError"


async def test_a_row_refused_later_is_dead_lettered_with_the_time_of_the_refusal() -> None:
    async def flaky(event: Any, ctx: Context) -> None:
        ctx.emit(event)
        if ctx.attempt == 1:
            raise TransientError("once")

    proc, batcher, publisher = pipeline(flaky)
    done = Done()
    async with proc:
        await process(proc, record(0), done)
        await asyncio.sleep(0.05)
        batcher.refuse(0)
        for _ in range(5):
            await asyncio.sleep(0)
    headers = publisher.sent[0][2]
    assert headers["dlq.attempts"] == b"2"
    assert headers["dlq.first_failure"] < headers["dlq.last_failure"]  # the refusal, later
