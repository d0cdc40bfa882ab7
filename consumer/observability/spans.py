"""Spans per message (OpenTelemetry; composed in only when `CONSUMER_TRACING=otlp`).

For each record, a `process <topic>` span (kind CONSUMER) whose parent is the
context its headers carry (W3C `traceparent` / `tracestate`), with the
messaging attributes of the semantic conventions. It lasts until the message
is *done* — its rows written or its dead-letter send acknowledged — and ends
with `consumer.outcome` (`ok`, `invalid`, `dead_lettered`), error status
and `error.type` when it was dead-lettered. Its children:

- `validate` — the record's validation (an invalid record's error recorded);
- `handle` — one per handler attempt, `consumer.attempt` = 1, 2, ...; a
  failed attempt records the exception, and when another follows, a `retry`
  event carries the delay (`consumer.retry.delay_s`);
- `send <dead-letter topic>` (kind PRODUCER) — the dead-letter send.

A sink write is one `write <sink>` span (kind CLIENT) linked to the `process`
span of every sampled message whose rows it carries: a batch has many parents.

Only sampled messages cost more than the header parsing and one non-recording
span: they alone are kept in `SpanRegistry` (for the links and the end at
`done`), and only they get children.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context as OtelContext
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer

from consumer.config import Settings
from consumer.gates.context import NextRun, RunContext, RunMiddleware
from consumer.gates.retry import AttemptFailed
from consumer.gates.validation import Segment
from consumer.observability.otel import extract
from consumer.pipeline import Pipeline, build_processor
from consumer.security import KafkaSecurity
from consumer.types import DoneRun, Record, Sink

if TYPE_CHECKING:
    from consumer.observability.metrics import Metrics
    from consumer.observability.otel import Tracing

#: Keys longer than this, or not UTF-8 text, are not recorded.
MAX_KEY_BYTES = 128

Coordinates = tuple[str, int, int]
_ROOT = OtelContext()


class SpanRegistry:
    """The open `process` spans of sampled messages, by (topic, partition,
    offset): a message's span ends when it is done, and a sink write links
    to the spans of the rows it carries. Holds at most what is in flight."""

    __slots__ = ("_spans",)

    def __init__(self) -> None:
        self._spans: dict[Coordinates, Span] = {}

    def __len__(self) -> int:
        return len(self._spans)

    def add(self, record: Record, span: Span) -> None:
        stale = self._spans.get((record.topic, record.partition, record.offset))
        if stale is not None:  # redelivered while a previous delivery was left in flight
            stale.end()
        self._spans[record.topic, record.partition, record.offset] = span

    def get(self, topic: str, partition: int, offset: int) -> Span | None:
        return self._spans.get((topic, partition, offset))

    def end(self, record: Record) -> None:
        span = self._spans.pop((record.topic, record.partition, record.offset), None)
        if span is not None:
            span.end()

    def end_all(self, outcome: str) -> None:
        """At close: messages still open were left in flight."""
        spans, self._spans = self._spans, {}
        for span in spans.values():
            span.set_attribute("consumer.outcome", outcome)
            span.end()


class Spans:
    """The pipeline's `Observer` (consumer.pipeline.Observer): a gate in
    front of the chain that starts each record's `process` span and ends it
    at `done`, and the hooks for the `validate`, `handle` and `send`
    children and the sink's `write` spans."""

    def __init__(self, tracer: Tracer, settings: Settings,
                 registry: SpanRegistry | None = None) -> None:
        self.tracer = tracer
        self.registry = SpanRegistry() if registry is None else registry
        self._group = settings.group_id
        self._keys = settings.tracing_record_keys

    # -- the gate ------------------------------------------------------------

    def middleware(self) -> RunMiddleware:
        return self._gate

    async def _gate(self, run: RunContext, call_next: NextRun) -> None:
        records = run.records
        if len(records) == 1:
            span = self._start(records[0])
            if span.is_recording():
                run.done = self._ending(run.done)
            # Current even when not sampled: the handler's own calls then
            # carry the producer's context on, with its sampling decision.
            with trace.use_span(span):
                await call_next(run)
            return
        sampled = False
        for record in records:
            if self._start(record).is_recording():
                sampled = True
        if sampled:
            run.done = self._ending(run.done)
        await call_next(run)

    def _start(self, record: Record) -> Span:
        """The record's `process` span, parented by its headers' context;
        registered (to end at `done`) when sampled."""
        # No headers (a producer that does not trace): nothing to parse, a root.
        headers = record.headers
        span = self.tracer.start_span(f"process {record.topic}",
                                      context=extract(headers) if headers else _ROOT,
                                      kind=SpanKind.CONSUMER)
        if span.is_recording():
            span.set_attributes(self._attributes(record))
            self.registry.add(record, span)
        return span

    def _ending(self, done: DoneRun) -> DoneRun:
        """`done` that first ends the records' spans."""
        end = self.registry.end

        def traced_done(records: Sequence[Record]) -> None:
            for record in records:
                end(record)
            done(records)

        return traced_done

    def _attributes(self, record: Record) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": record.topic,
            "messaging.destination.partition.id": str(record.partition),
            "messaging.kafka.offset": record.offset,
            "messaging.consumer.group.name": self._group,
            "messaging.message.body.size": len(record.value or b""),
            # Overwritten when the message fails or is left in flight.
            "consumer.outcome": "ok",
            "consumer.attempts": 1,
        }
        key = record.key
        if key is None:
            return attributes
        if self._keys and len(key) <= MAX_KEY_BYTES:
            # Not UTF-8: no canonical text form, not recorded.
            with contextlib.suppress(UnicodeDecodeError):
                attributes["messaging.kafka.message.key"] = key.decode("utf-8")
        return attributes

    # -- the hooks -----------------------------------------------------------

    def validated(self, segments: Sequence[Segment], started: int, ended: int,
                  size: int) -> None:
        """`validate` children for the sampled records of a run validated in
        one pass (each spans the pass), and their event ids."""
        if not len(self.registry):
            return
        get = self.registry.get
        for segment in segments:
            for i, record in enumerate(segment.records):
                parent = get(record.topic, record.partition, record.offset)
                if parent is None:
                    continue
                if segment.error is None:
                    parent.set_attribute("messaging.message.id", str(segment.events[i].id))
                self._child(parent, "validate", started, ended, error=segment.error,
                            attributes={"consumer.run.size": size})

    def attempt(self, run: RunContext) -> contextlib.AbstractContextManager[AttemptFailed | None]:
        """A record alone: its attempt is a current `handle` span (the
        handler's own calls are its children). A run: each sampled record
        gets a `handle` child spanning the run's call."""
        get = self.registry.get
        if len(run.records) == 1:
            record = run.records[0]
            parent = get(record.topic, record.partition, record.offset)
            if parent is not None:
                return self._handle(parent, run.attempt)
            if record.headers and not trace.get_current_span().get_span_context().is_valid:
                # Not sampled, and split out of a run (a record delivered
                # alone has its span current already): the handler's own
                # calls still carry the producer's context on.
                return _current(trace.get_current_span(extract(record.headers)))
            return contextlib.nullcontext()
        parents = [p for r in run.records
                   if (p := get(r.topic, r.partition, r.offset)) is not None]
        if not parents:
            return contextlib.nullcontext()
        return self._handle_run(parents, run)

    @contextlib.contextmanager
    def _handle(self, parent: Span, attempt: int) -> Iterator[AttemptFailed]:
        parent.set_attribute("consumer.attempts", attempt)
        with self.tracer.start_as_current_span(
                "handle", context=trace.set_span_in_context(parent),
                attributes={"consumer.attempt": attempt}) as span:

            def failed(exc: BaseException, wait: float | None) -> None:
                _error(span, exc)
                if wait is not None:
                    span.add_event("retry", {"consumer.retry.delay_s": wait,
                                             "consumer.attempt": attempt + 1})

            yield failed

    @contextlib.contextmanager
    def _handle_run(self, parents: list[Span], run: RunContext) -> Iterator[AttemptFailed]:
        started = time.time_ns()
        error: BaseException | None = None

        def failed(exc: BaseException, wait: float | None) -> None:
            nonlocal error
            error = exc

        try:
            yield failed
        finally:
            ended = time.time_ns()
            for parent in parents:
                self._child(parent, "handle", started, ended, error=error, attributes={
                    "consumer.attempt": run.attempt, "consumer.run.size": len(run.records)})

    @contextlib.contextmanager
    def dead_letter(self, record: Record, exc: BaseException, attempts: int,
                    topic: str) -> Iterator[None]:
        """Marks the message's span as dead-lettered and puts the send in a
        `send <topic>` child (kind PRODUCER), ended before `done` ends the
        message."""
        parent = self.registry.get(record.topic, record.partition, record.offset)
        if parent is None:
            yield
            return
        error_type = type(exc).__name__
        parent.record_exception(exc)
        parent.set_status(Status(StatusCode.ERROR, f"{error_type}: {exc}"))
        parent.set_attributes({
            "error.type": error_type, "consumer.attempts": attempts,
            "consumer.outcome": "invalid" if error_type == "InvalidEvent" else "dead_lettered"})
        span = self.tracer.start_span(
            f"send {topic}", context=trace.set_span_in_context(parent),
            kind=SpanKind.PRODUCER,
            attributes={"messaging.system": "kafka", "messaging.operation.type": "send",
                        "messaging.operation.name": "send",
                        "messaging.destination.name": topic})
        try:
            with trace.use_span(span, record_exception=False, set_status_on_exception=False):
                yield
        except BaseException:
            span.set_status(Status(StatusCode.ERROR, "not acknowledged before close"))
            raise
        finally:
            span.end()

    def _child(self, parent: Span, name: str, start: int, end: int, *,
               error: BaseException | None, attributes: dict[str, Any]) -> None:
        """A finished child span with given times (ns): a run's steps run
        once for many messages, each of which gets its own child."""
        span = self.tracer.start_span(name, context=trace.set_span_in_context(parent),
                                      start_time=start, attributes=attributes)
        if error is not None:
            _error(span, error)
        span.end(end_time=end)

    def sink(self, sink: Sink) -> Sink:
        return TracedSink(sink, self.tracer, self.registry)

    def close(self) -> None:
        self.registry.end_all("left_in_flight")


@contextlib.contextmanager
def _current(span: Span) -> Iterator[None]:
    with trace.use_span(span):
        yield


def _error(span: Span, exc: BaseException) -> None:
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
    span.set_attribute("error.type", type(exc).__name__)


class TracedSink:
    """A sink whose every write is a `write <sink>` span linked to the
    `process` spans of the sampled messages it carries (none sampled: no
    span). Everything else is the wrapped sink's."""

    def __init__(self, sink: Sink, tracer: Tracer, registry: SpanRegistry) -> None:
        self.sink = sink
        self.name: str = sink.name
        self.max_writes = sink.max_writes
        self._tracer = tracer
        self._registry = registry

    async def open(self) -> None:
        await self.sink.open()

    async def close(self) -> None:
        await self.sink.close()

    async def healthy(self) -> bool:
        return await self.sink.healthy()

    async def write(self, rows: Sequence[Any]) -> None:
        get = self._registry.get
        links = [Link(span.get_span_context()) for row in rows
                 if (span := get(row.topic, row.partition, row.offset)) is not None]
        if not links:
            await self.sink.write(rows)
            return
        # No parent (the batcher's task runs outside any message), so the
        # write is a trace of its own that follows from every message.
        with self._tracer.start_as_current_span(
                f"write {self.name}", context=OtelContext(), kind=SpanKind.CLIENT, links=links,
                attributes={"consumer.sink": self.name, "consumer.batch.rows": len(rows)}):
            await self.sink.write(rows)


def build_traced_processor(settings: Settings, tracing: Tracing,
                           metrics: Metrics | None = None, *,
                           security: KafkaSecurity | None = None) -> Pipeline:
    """`consumer.pipeline.build_processor` with spans: the same pipeline,
    observed. Raises `ConfigError` before any I/O."""
    return build_processor(settings, metrics, security=security,
                           observer=Spans(tracing.tracer, settings))
