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
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context as OtelContext
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer

from consumer.config import Settings
from consumer.formats import ValueFormat
from consumer.gates.context import Context, Next
from consumer.gates.middleware import Middleware, ValidationMiddleware
from consumer.gates.retry import RetryMiddleware, RetryPolicy
from consumer.gates.runs import RunContext, Segment
from consumer.observability.otel import extract
from consumer.pipeline import Pipeline, load_parts
from consumer.security import KafkaSecurity
from consumer.sinks.batcher import Batcher
from consumer.types import Done, DoneRun, Handler, Record

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


class MessageSpans:
    """Starts `process` spans and their dead-letter children."""

    def __init__(self, tracer: Tracer, settings: Settings, registry: SpanRegistry) -> None:
        self.tracer = tracer
        self.registry = registry
        self._group = settings.group_id
        self._keys = settings.tracing_record_keys

    def start(self, record: Record) -> Span:
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

    def failed(self, record: Record, exc: BaseException, attempts: int) -> Span | None:
        """Mark the message's span as dead-lettered; None when not sampled."""
        span = self.registry.get(record.topic, record.partition, record.offset)
        if span is None:
            return None
        error_type = type(exc).__name__
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{error_type}: {exc}"))
        span.set_attributes({
            "error.type": error_type, "consumer.attempts": attempts,
            "consumer.outcome": "invalid" if error_type == "InvalidEvent" else "dead_lettered"})
        return span

    def dead_letter_span(self, parent: Span, topic: str) -> Span:
        return self.tracer.start_span(
            f"send {topic}", context=trace.set_span_in_context(parent),
            kind=SpanKind.PRODUCER,
            attributes={"messaging.system": "kafka", "messaging.operation.type": "send",
                        "messaging.operation.name": "send",
                        "messaging.destination.name": topic})

    def child(self, parent: Span, name: str, start: int, end: int, *,
              error: BaseException | None, attributes: dict[str, Any]) -> None:
        """A finished child span with given times (ns): the run path's steps
        run once for many messages, each of which gets its own child."""
        span = self.tracer.start_span(name, context=trace.set_span_in_context(parent),
                                      start_time=start, attributes=attributes)
        if error is not None:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
            span.set_attribute("error.type", type(error).__name__)
        span.end(end_time=end)

    def validated_run(self, segments: Sequence[Segment], start: int, end: int,
                      size: int) -> None:
        """`validate` children for the sampled records of a run validated in
        one pass (each spans the pass), and their event ids."""
        get = self.registry.get
        for segment in segments:
            for i, record in enumerate(segment.records):
                parent = get(record.topic, record.partition, record.offset)
                if parent is None:
                    continue
                if segment.error is None:
                    parent.set_attribute("messaging.message.id", str(segment.events[i].id))
                self.child(parent, "validate", start, end, error=segment.error,
                           attributes={"consumer.run.size": size})

    def ending_run(self, done: DoneRun) -> DoneRun:
        """`done` for runs that first ends the records' spans."""
        end = self.registry.end

        def traced_done(records: Sequence[Record]) -> None:
            for record in records:
                end(record)
            done(records)

        return traced_done

    def ending(self, done: Done) -> Done:
        """`done` that first ends the record's span."""
        end = self.registry.end

        def traced_done(record: Record) -> None:
            end(record)
            done(record)

        return traced_done


class TracedValidation(ValidationMiddleware):
    """Validation inside a `validate` span (when the message is sampled)."""

    def __init__(self, tracer: Tracer, allow_unknown: bool = False,
                 value_format: ValueFormat | None = None) -> None:
        super().__init__(allow_unknown, value_format=value_format)
        self._tracer = tracer

    async def __call__(self, ctx: Context, call_next: Next) -> None:
        if self._format is not None:  # value formats hook
            await self._prepare(ctx)
        message = trace.get_current_span()
        if message.is_recording():
            with self._tracer.start_as_current_span("validate"):
                ctx.event = self._validate(ctx.record.value, allow_unknown=self._allow_unknown)
            message.set_attribute("messaging.message.id", str(ctx.event.id))
        else:
            ctx.event = self._validate(ctx.record.value, allow_unknown=self._allow_unknown)
        await call_next(ctx)


class TracedRetry(RetryMiddleware):
    """Each attempt inside a `handle` span (when the message is sampled): a
    failure is recorded on it, and when another attempt follows, the delay
    as a `retry` event before the span ends."""

    def __init__(self, tracer: Tracer, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tracer = tracer

    async def _attempt(self, ctx: Context, call_next: Next, started: float) -> float | None:
        message = trace.get_current_span()
        if not message.is_recording():
            return await super()._attempt(ctx, call_next, started)
        message.set_attribute("consumer.attempts", ctx.attempt)
        with self._tracer.start_as_current_span(
                "handle", attributes={"consumer.attempt": ctx.attempt}):
            return await super()._attempt(ctx, call_next, started)

    def _retrying(self, ctx: Context, exc: Exception, wait: float) -> None:
        super()._retrying(ctx, exc, wait)
        span = trace.get_current_span()
        if span.is_recording():
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            span.set_attribute("error.type", type(exc).__name__)
            span.add_event("retry", {"consumer.retry.delay_s": wait,
                                     "consumer.attempt": ctx.attempt + 1})


class TracedSink:
    """A sink whose every write is a `write <sink>` span linked to the
    `process` spans of the sampled messages it carries (none sampled: no
    span). Everything else is the wrapped sink's."""

    def __init__(self, sink: Any, tracer: Tracer, registry: SpanRegistry) -> None:
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
        healthy: bool = await self.sink.healthy()
        return healthy

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


class TracedPipeline(Pipeline):
    """The pipeline with spans (see the module docstring); the per-message
    logic is `Pipeline`'s, untouched. The service builds it
    (`build_traced_processor`) only when tracing is on."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None, *, tracer: Tracer,
                 registry: SpanRegistry, **kwargs: Any) -> None:
        self._tracer = tracer
        self._spans = MessageSpans(tracer, settings, registry)
        super().__init__(settings, metrics, **kwargs)
        if self._run_handler is not None:
            self._run_handler = self._traced_run_handler(self._run_handler)

    def _validation(self, allow_unknown: bool) -> Middleware:
        return TracedValidation(self._tracer, allow_unknown, value_format=self.value_format)

    def _retry(self, policy: RetryPolicy, *, on_retry: Callable[[Context], None]) -> Middleware:
        return TracedRetry(self._tracer, policy, on_retry=on_retry)

    async def close(self) -> None:
        await super().close()
        self._spans.registry.end_all("left_in_flight")

    async def process_run(self, records: Sequence[Record], done: DoneRun) -> None:
        if self._run_handler is None:  # record by record: `process` starts each span
            await super().process_run(records, done)
            return
        start = self._spans.start
        sampled = False
        for record in records:
            if start(record).is_recording():
                sampled = True
        await super().process_run(records, self._spans.ending_run(done) if sampled else done)

    def _validate_run(self, records: Sequence[Record]) -> list[Segment]:
        started = time.time_ns()
        segments = super()._validate_run(records)
        if len(self._spans.registry):
            self._spans.validated_run(segments, started, time.time_ns(), len(records))
        return segments

    def _traced_run_handler(self, handler: Handler) -> Handler:
        """The batch handler, with a `handle` child (the whole call) for each
        sampled message of the run."""
        spans = self._spans

        async def handle(events: Sequence[Any], ctx: RunContext) -> None:
            get = spans.registry.get
            parents = [p for r in ctx.records
                       if (p := get(r.topic, r.partition, r.offset)) is not None]
            if not parents:
                await handler(events, ctx)
                return
            started = time.time_ns()
            error: BaseException | None = None
            try:
                await handler(events, ctx)
            except BaseException as exc:
                error = exc  # the run is split and retried record by record
                raise
            finally:
                ended = time.time_ns()
                for parent in parents:
                    spans.child(parent, "handle", started, ended, error=error, attributes={
                        "consumer.attempt": 1, "consumer.run.size": len(events)})

        return handle

    async def process(self, record: Record, done: Done) -> None:
        spans = self._spans
        # A record split out of a run already has its span open.
        span = spans.registry.get(record.topic, record.partition, record.offset)
        if span is None:
            span = spans.start(record)
            if span.is_recording():
                done = spans.ending(done)
        # Current even when not sampled: the handler's own calls then carry
        # the producer's context on, with its sampling decision.
        with trace.use_span(span):
            await super().process(record, done)

    async def _dead_letter(self, ctx: Context, exc: BaseException, done: Done) -> None:
        parent = self._spans.failed(ctx.record, exc, ctx.attempt)
        if parent is None:
            await super()._dead_letter(ctx, exc, done)
            return
        span = self._spans.dead_letter_span(parent, self.publisher.topic)
        acknowledged = False

        def sent(record: Record) -> None:
            nonlocal acknowledged
            acknowledged = True
            span.end()  # before `done` ends the message's span
            done(record)

        try:
            with trace.use_span(span):
                await super()._dead_letter(ctx, exc, sent)
        finally:
            if not acknowledged:
                span.set_status(Status(StatusCode.ERROR, "not acknowledged before close"))
                span.end()


def build_traced_processor(settings: Settings, tracing: Tracing,
                           metrics: Metrics | None = None, *,
                           security: KafkaSecurity | None = None) -> TracedPipeline:
    """`consumer.pipeline.build_processor` with spans: the same parts, the
    sink behind `TracedSink`. Raises `ConfigError` before any I/O."""
    parts = load_parts(settings, metrics, security=security)
    registry = SpanRegistry()
    batcher = Batcher(TracedSink(parts.sink, tracing.tracer, registry), settings, metrics)
    return TracedPipeline(settings, metrics, tracer=tracing.tracer, registry=registry,
                          handler=parts.handler, middleware=parts.middleware, batcher=batcher,
                          sink=parts.sink, handler_timeout=parts.bounded,
                          security=parts.security, value_format=parts.value_format)
