"""Spans per message, recorded by the SDK's in-memory exporter: parenting
from the record's `traceparent`, children per step, links on sink writes,
error status on dead-lettered messages, nothing at all when tracing is off."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from consumer.config import Settings
from consumer.errors import FatalError, TransientError
from consumer.gates.context import Context
from consumer.observability.otel import Tracing
from consumer.observability.spans import SpanRegistry, Spans, TracedSink, build_traced_processor
from consumer.pipeline import Pipeline, build_processor
from consumer.sinks.batcher import Batcher
from consumer.types import Handler
from tests.unit.gates.fakes import (
    Done,
    FakeBatcher,
    FakePublisher,
    emit_handler,
    noop_handler,
)
from tests.unit.gates.fakes import process as process_one
from tests.unit.gates.fakes import record as make_record

TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
PARENT_ID = 0x00F067AA0BA902B7
TRACEPARENT = f"00-{TRACE_ID:032x}-{PARENT_ID:016x}-01".encode()
HEADERS = [("traceparent", TRACEPARENT), ("tracestate", b"vendor=abc")]


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def tracing(exporter: InMemorySpanExporter, **env: str) -> Tracing:
    return Tracing.from_env(env, processor=SimpleSpanProcessor(exporter))


def traced(
    exporter: InMemorySpanExporter,
    handler: Handler = noop_handler,
    *,
    env: dict[str, str] | None = None,
    batcher: Any = None,
    **settings: Any,
) -> tuple[Pipeline, FakePublisher, SpanRegistry]:
    opts: dict[str, Any] = {
        "retry_base_delay": 0.01,
        "retry_max_delay": 0.01,
        "sink_url": "none",
        "group_id": "g1",
        **settings,
    }
    publisher, registry = FakePublisher(), SpanRegistry()
    configured = Settings(**opts)
    proc = Pipeline(
        configured,
        handler=handler,
        batcher=batcher or FakeBatcher(),
        publisher=publisher,
        observer=Spans(tracing(exporter, **(env or {})).tracer, configured, registry),
    )
    return proc, publisher, registry


def by_name(spans: Sequence[ReadableSpan]) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        out.setdefault(span.name, []).append(span)
    return out


def attrs(span: Any) -> dict[str, Any]:
    """A span's or an event's attributes, as plain values."""
    return dict(span.attributes or {})


def children(spans: Sequence[ReadableSpan], parent: ReadableSpan) -> Iterator[ReadableSpan]:
    for span in spans:
        if span.parent is not None and span.parent.span_id == parent.context.span_id:
            yield span


async def test_process_span_continues_the_producers_trace(exporter: InMemorySpanExporter) -> None:
    proc, _, registry = traced(exporter)
    done = Done()
    rec = make_record(5, headers=HEADERS)
    async with proc:
        await process_one(proc, rec, done)
    assert done.offsets == [5]
    assert len(registry) == 0  # ended at done
    spans = exporter.get_finished_spans()
    names = by_name(spans)
    process = names["process t"][0]
    assert process.kind is SpanKind.CONSUMER
    assert process.context.trace_id == TRACE_ID
    assert process.parent is not None
    assert process.parent.span_id == PARENT_ID
    assert process.parent.is_remote
    assert process.context.trace_state.get("vendor") == "abc"
    found = attrs(process)
    assert found["messaging.system"] == "kafka"
    assert found["messaging.operation.type"] == "process"
    assert found["messaging.destination.name"] == "t"
    assert found["messaging.destination.partition.id"] == "0"
    assert found["messaging.kafka.offset"] == 5
    assert found["messaging.consumer.group.name"] == "g1"
    assert rec.key is not None
    assert found["messaging.kafka.message.key"] == rec.key.decode()
    assert found["consumer.outcome"] == "ok"
    assert found["consumer.attempts"] == 1
    assert isinstance(found["messaging.message.id"], str)
    assert found["messaging.message.id"]
    assert process.status.status_code is StatusCode.UNSET
    assert sorted(s.name for s in children(spans, process)) == ["handle", "validate"]
    assert names["handle"][0].attributes == {"consumer.attempt": 1}


async def test_without_headers_a_message_starts_its_own_trace(
    exporter: InMemorySpanExporter,
) -> None:
    proc, _, _ = traced(exporter)
    async with proc:
        await process_one(proc, make_record(1), Done())
    process = by_name(exporter.get_finished_spans())["process t"][0]
    assert process.parent is None
    assert process.context.trace_id != TRACE_ID


async def test_each_attempt_is_a_span_with_its_error_and_the_retry_delay(
    exporter: InMemorySpanExporter,
) -> None:
    calls = 0

    async def flaky(event: Any, ctx: Context) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise TransientError("downstream busy")

    proc, _, _ = traced(exporter, flaky)
    async with proc:
        await process_one(proc, make_record(2, headers=HEADERS), Done())
    names = by_name(exporter.get_finished_spans())
    first, second = sorted(names["handle"], key=lambda s: s.start_time or 0)
    assert attrs(first)["consumer.attempt"] == 1
    assert first.status.status_code is StatusCode.ERROR
    events = {e.name: e for e in first.events}
    assert attrs(events["exception"])["exception.type"].endswith("TransientError")
    retry = attrs(events["retry"])
    assert 0.0 <= retry["consumer.retry.delay_s"] <= 0.01
    assert retry["consumer.attempt"] == 2
    assert attrs(second)["consumer.attempt"] == 2
    assert second.status.status_code is StatusCode.UNSET
    process = names["process t"][0]
    assert attrs(process)["consumer.attempts"] == 2
    assert process.status.status_code is StatusCode.UNSET


async def test_dead_lettered_message_has_error_status_and_a_send_span(
    exporter: InMemorySpanExporter,
) -> None:
    async def broken(event: Any, ctx: Context) -> None:
        raise FatalError("no such customer")

    proc, publisher, _ = traced(exporter, broken)
    done = Done()
    async with proc:
        await process_one(proc, make_record(9, headers=HEADERS), done)
    assert done.offsets == [9]
    spans = exporter.get_finished_spans()
    names = by_name(spans)
    process = names["process t"][0]
    assert process.status.status_code is StatusCode.ERROR
    found = attrs(process)
    assert found["error.type"] == "FatalError"
    assert found["consumer.outcome"] == "dead_lettered"
    send = names["send t.dlq"][0]
    assert send.kind is SpanKind.PRODUCER
    assert send.parent is not None
    assert send.parent.span_id == process.context.span_id
    assert attrs(send)["messaging.destination.name"] == ("t.dlq")
    handle = names["handle"][0]
    assert handle.status.status_code is StatusCode.ERROR
    # The dead-letter record keeps the producer's context, and gains none of ours.
    _, _, headers = publisher.sent[0]
    assert headers["traceparent"] == TRACEPARENT
    assert headers["tracestate"] == b"vendor=abc"


async def test_invalid_record_fails_its_validate_span(exporter: InMemorySpanExporter) -> None:
    proc, publisher, _ = traced(exporter)
    async with proc:
        await process_one(proc, make_record(4, value=b"{not json", headers=HEADERS), Done())
    names = by_name(exporter.get_finished_spans())
    validate = names["validate"][0]
    assert validate.status.status_code is StatusCode.ERROR
    assert any(e.name == "exception" for e in validate.events)
    process = names["process t"][0]
    assert attrs(process)["consumer.outcome"] == "invalid"
    assert process.status.status_code is StatusCode.ERROR
    assert "handle" not in names
    assert publisher.sent[0][2]["traceparent"] == TRACEPARENT


class MemorySink:
    name = "memory"
    max_writes = 1

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []

    async def open(self) -> None:
        return None

    async def write(self, rows: Sequence[Any]) -> None:
        self.batches.append(list(rows))

    async def close(self) -> None:
        return None

    async def healthy(self) -> bool:
        return True


async def test_sink_write_is_one_span_linked_to_every_message_it_carries(
    exporter: InMemorySpanExporter,
) -> None:
    settings = Settings(sink_url="none", batch_max_items=3, batch_max_latency=5.0)
    registry = SpanRegistry()
    trc = tracing(exporter)
    sink = MemorySink()
    batcher = Batcher(TracedSink(sink, trc.tracer, registry), settings)
    proc = Pipeline(
        settings,
        observer=Spans(trc.tracer, settings, registry),
        handler=emit_handler,
        batcher=batcher,
        publisher=FakePublisher(),
        handler_timeout=False,
    )
    done = Done()
    async with proc:
        for offset in range(3):
            await process_one(
                proc, make_record(offset, headers=HEADERS if offset == 0 else ()), done
            )
        for _ in range(100):
            if len(done.offsets) == 3:
                break
            await asyncio.sleep(0.01)
    assert sorted(done.offsets) == [0, 1, 2]
    assert [len(b) for b in sink.batches] == [3]
    names = by_name(exporter.get_finished_spans())
    (write,) = names["write memory"]
    assert write.kind is SpanKind.CLIENT
    assert write.parent is None
    processes = names["process t"]
    assert {link.context.span_id for link in write.links} == {p.context.span_id for p in processes}
    # Three messages, three traces (one continued from its producer), one write.
    assert len({p.context.trace_id for p in processes}) == 3
    assert attrs(write)["consumer.batch.rows"] == 3
    # A message's span lasts until its row is written.
    assert write.end_time is not None
    assert all((p.end_time or 0) >= write.end_time for p in processes)


async def test_unsampled_messages_record_nothing(exporter: InMemorySpanExporter) -> None:
    proc, sink = run_pipeline(
        exporter,
        emit_handler,
        {"OTEL_TRACES_SAMPLER": "always_off"},
        batch_max_items=2,
        batch_max_latency=5.0,
    )
    assert isinstance(proc.observer, Spans)
    registry = proc.observer.registry
    done = Done()
    async with proc:
        for offset in range(2):
            await process_one(proc, make_record(offset), done)
        assert len(registry) == 0
        for _ in range(100):
            if len(done.offsets) == 2:
                break
            await asyncio.sleep(0.01)
    assert sorted(done.offsets) == [0, 1]
    assert sink.batches
    assert exporter.get_finished_spans() == ()


@pytest.mark.parametrize(
    ("key", "record_keys"), [(b"\xff\xfe", True), (b"k" * 129, True), (b"order-1", False)]
)
async def test_key_recorded_only_when_safe(
    exporter: InMemorySpanExporter, key: bytes, record_keys: bool
) -> None:
    proc, _, _ = traced(exporter, tracing_record_keys=record_keys)
    async with proc:
        await process_one(proc, make_record(1, value=b"{}", key=key), Done())
    process = by_name(exporter.get_finished_spans())["process t"][0]
    assert "messaging.kafka.message.key" not in (process.attributes or {})


async def test_messages_left_in_flight_end_their_spans_at_close(
    exporter: InMemorySpanExporter,
) -> None:
    proc, _, registry = traced(exporter, emit_handler)
    async with proc:
        await process_one(proc, make_record(1), Done())
        assert len(registry) == 1  # its row is never written
    process = by_name(exporter.get_finished_spans())["process t"][0]
    assert process.attributes is not None
    assert process.attributes["consumer.outcome"] == "left_in_flight"


def test_tracing_off_builds_the_plain_pipeline_and_loads_no_opentelemetry() -> None:
    code = (
        "import sys\n"
        "from consumer.config import Settings\n"
        "from consumer.observability.tracing import start_tracing\n"
        "from consumer.pipeline import Pipeline, build_processor\n"
        "import consumer.service\n"
        "settings = Settings(sink_url='none')\n"
        "assert start_tracing(settings.tracing) is None\n"
        "p = build_processor(settings)\n"
        "assert type(p) is Pipeline and p.observer is None, p\n"
        "loaded = [m for m in sys.modules if m.startswith('opentelemetry')]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_the_traced_path_is_composed_only_when_asked(exporter: InMemorySpanExporter) -> None:
    settings = Settings(sink_url="none")
    plain = build_processor(settings)
    assert plain.observer is None
    proc = build_traced_processor(settings, tracing(exporter))
    assert isinstance(proc.observer, Spans)
    assert proc.batcher is not None
    assert isinstance(proc.batcher.sink, TracedSink)


# -- the run path: one validation pass and one batch handler call per run ----


def run_pipeline(
    exporter: InMemorySpanExporter,
    handler: Handler,
    env: dict[str, str] | None = None,
    **settings: Any,
) -> tuple[Pipeline, MemorySink]:
    opts: dict[str, Any] = {
        "sink_url": "none",
        "batch_max_items": 1000,
        "batch_max_latency": 0.01,
        "retry_base_delay": 0.0,
        "retry_max_delay": 0.0,
        **settings,
    }
    configured = Settings(**opts)
    spans, sink = Spans(tracing(exporter, **(env or {})).tracer, configured), MemorySink()
    proc = Pipeline(
        configured,
        observer=spans,
        handler=handler,
        batcher=Batcher(spans.sink(sink), configured),
        publisher=FakePublisher(),
        handler_timeout=False,
    )
    return proc, sink


class RunDone:
    def __init__(self) -> None:
        self.offsets: list[int] = []

    def __call__(self, records: Sequence[Any]) -> None:
        self.offsets.extend(r.offset for r in records)


async def wait_done(done: RunDone, count: int) -> None:
    for _ in range(200):
        if len(done.offsets) >= count:
            return
        await asyncio.sleep(0.01)


async def test_a_run_gives_every_message_its_own_spans(exporter: InMemorySpanExporter) -> None:
    from consumer.handlers.store import store_batch

    proc, sink = run_pipeline(exporter, store_batch)
    assert proc.takes_runs
    run = [
        make_record(0, headers=HEADERS),
        make_record(1),
        make_record(2, value=b"{oops"),
        make_record(3),
        make_record(4),
    ]
    done = RunDone()
    async with proc:
        await proc.process_run(run, done)
        await wait_done(done, 5)
    assert sorted(done.offsets) == [0, 1, 2, 3, 4]
    spans = exporter.get_finished_spans()
    names = by_name(spans)
    processes = {attrs(p)["messaging.kafka.offset"]: p for p in names["process t"]}
    assert sorted(processes) == [0, 1, 2, 3, 4]
    assert processes[0].context.trace_id == TRACE_ID
    for offset, process in processes.items():
        kids = {s.name: s for s in children(spans, process)}
        assert attrs(kids["validate"])["consumer.run.size"] == 5
        if offset == 2:
            assert set(kids) == {"validate", "send t.dlq"}
            assert kids["validate"].status.status_code is StatusCode.ERROR
            assert attrs(process)["consumer.outcome"] == "invalid"
            assert process.status.status_code is StatusCode.ERROR
        else:
            assert set(kids) == {"validate", "handle"}
            # Valid stretches around the invalid record: [0, 1] and [3, 4].
            assert attrs(kids["handle"])["consumer.run.size"] == 2
            assert attrs(process)["consumer.outcome"] == "ok"
            assert attrs(process)["messaging.message.id"]
    (write,) = names["write memory"]
    assert [len(b) for b in sink.batches] == [4]
    assert {link.context.span_id for link in write.links} == {
        processes[o].context.span_id for o in (0, 1, 3, 4)
    }


async def test_a_split_run_keeps_one_process_span_per_message(
    exporter: InMemorySpanExporter,
) -> None:
    from consumer.gates.context import RunContext, batch_handler

    @batch_handler
    async def handler(events: Sequence[Any], ctx: RunContext) -> None:
        if any(r.offset == 1 for r in ctx.records):
            raise FatalError("poison")
        ctx.emit()

    proc, _ = run_pipeline(exporter, handler)
    done = RunDone()
    async with proc:
        await proc.process_run([make_record(i) for i in range(3)], done)
        await wait_done(done, 3)
    assert sorted(done.offsets) == [0, 1, 2]
    spans = exporter.get_finished_spans()
    processes = {attrs(p)["messaging.kafka.offset"]: p for p in by_name(spans)["process t"]}
    assert sorted(processes) == [0, 1, 2]  # split, not started again
    poison = sorted(
        (s for s in children(spans, processes[1]) if s.name == "handle"),
        key=lambda s: s.start_time or 0,
    )
    # The run's call (failed, for all three), then the poison record alone.
    assert [attrs(s).get("consumer.run.size") for s in poison] == [3, None]
    assert all(s.status.status_code is StatusCode.ERROR for s in poison)
    assert attrs(processes[1])["consumer.outcome"] == "dead_lettered"
    assert attrs(processes[0])["consumer.outcome"] == "ok"


async def test_an_unsampled_run_records_nothing(exporter: InMemorySpanExporter) -> None:
    from consumer.handlers.store import store_batch

    proc, sink = run_pipeline(exporter, store_batch, {"OTEL_TRACES_SAMPLER": "always_off"})
    done = RunDone()
    async with proc:
        await proc.process_run([make_record(i) for i in range(3)], done)
        await wait_done(done, 3)
    assert sorted(done.offsets) == [0, 1, 2]
    assert sink.batches
    assert exporter.get_finished_spans() == ()


async def test_an_unsampled_split_record_carries_its_producers_context_on(
        exporter: InMemorySpanExporter) -> None:
    """Not sampled, its handler's own calls still propagate the producer's
    trace — also for a record handled alone after its run was split."""
    from opentelemetry import trace

    from consumer.gates.context import RunContext, batch_handler

    seen: list[tuple[int, int]] = []

    @batch_handler
    async def handler(events: Sequence[Any], ctx: RunContext) -> None:
        seen.append((len(ctx.records), trace.get_current_span().get_span_context().trace_id))
        if len(ctx.records) > 1:
            raise TransientError("split me")

    proc, _ = run_pipeline(exporter, handler, {"OTEL_TRACES_SAMPLER": "always_off"})
    done = RunDone()
    async with proc:
        await proc.process_run([make_record(i, headers=HEADERS) for i in range(2)], done)
    assert sorted(done.offsets) == [0, 1]
    assert seen == [(2, 0), (1, TRACE_ID), (1, TRACE_ID)]
    assert exporter.get_finished_spans() == ()
