"""OpenTelemetry set-up (the `otel` extra): provider, sampler, OTLP export,
the Kafka-headers carrier and trace ids on log lines.

Imported only through `consumer.observability.tracing.start_tracing` when
`CONSUMER_TRACING=otlp`; with `none` (the default) no module of OpenTelemetry
is loaded.

The standard variables configure the rest, as in any OpenTelemetry SDK:
`OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
`..._HEADERS`, `..._TIMEOUT`, `..._PROTOCOL` (`http/protobuf`, the default, or
`grpc` when `opentelemetry-exporter-otlp-proto-grpc` is installed),
`OTEL_SERVICE_NAME` (default `consumer`), `OTEL_RESOURCE_ATTRIBUTES`,
`OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` (default
`parentbased_always_on`), `OTEL_BSP_*` (the batch span processor),
`OTEL_PROPAGATORS` (default W3C `tracecontext,baggage`). A value the SDK would
silently replace by a default is a `ConfigError` naming the variable instead.

Context travels in Kafka record headers (`traceparent`, `tracestate`), read
and written through `HEADERS_GETTER` / `HEADERS_SETTER`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping, MutableSequence, Sequence
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context as OtelContext
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.util.types import Attributes

from consumer.errors import ConfigError

log = logging.getLogger("consumer.tracing")

INSTRUMENTATION = "consumer"
DEFAULT_SERVICE_NAME = "consumer"

KafkaHeaders = Sequence[tuple[str, bytes | None]]


class _HeadersGetter(Getter[KafkaHeaders]):
    """Reads propagation fields from Kafka headers. Kafka allows a name to
    repeat and a value to be null; names compare case-insensitively (W3C)."""

    def get(self, carrier: KafkaHeaders, key: str) -> list[str] | None:
        key = key.lower()
        values = [v.decode("utf-8", "replace") for k, v in carrier
                  if v is not None and k.lower() == key]
        return values or None

    def keys(self, carrier: KafkaHeaders) -> list[str]:
        return [k for k, _ in carrier]


class _HeadersSetter(Setter[MutableSequence[tuple[str, bytes | None]]]):
    """Writes a propagation field, replacing any header of the same name."""

    def set(self, carrier: MutableSequence[tuple[str, bytes | None]], key: str,
            value: str) -> None:
        lowered = key.lower()
        carrier[:] = [(k, v) for k, v in carrier if k.lower() != lowered]
        carrier.append((key, value.encode()))


HEADERS_GETTER = _HeadersGetter()
HEADERS_SETTER = _HeadersSetter()


def extract(headers: KafkaHeaders) -> OtelContext:
    """The remote context the headers carry (empty when they carry none)."""
    return propagate.extract(headers, getter=HEADERS_GETTER)


def inject(headers: MutableSequence[tuple[str, bytes | None]],
           context: OtelContext | None = None) -> None:
    """Write `context` (default: the current one) into the headers."""
    propagate.inject(headers, context=context, setter=HEADERS_SETTER)


class LinkedSampler(Sampler):
    """The configured sampler, except that a root span linked to a sampled
    span is sampled: a sink batch write has no parent but links to the
    messages it carries, and must be kept whenever one of them is."""

    def __init__(self, delegate: Sampler) -> None:
        self.delegate = delegate

    def should_sample(  # noqa: PLR0917 - the SDK's signature
            self, parent_context: OtelContext | None, trace_id: int, name: str,
                      kind: SpanKind | None = None, attributes: Attributes = None,
                      links: Sequence[Link] | None = None,
                      trace_state: Any = None) -> SamplingResult:
        # Links first: most spans have none, and they pay nothing more.
        if links and any(link.context.trace_flags.sampled for link in links) and not (
                trace.get_current_span(parent_context).get_span_context().is_valid):
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)
        return self.delegate.should_sample(parent_context, trace_id, name, kind, attributes,
                                           links, trace_state)

    def get_description(self) -> str:
        return f"LinkedSampler{{{self.delegate.get_description()}}}"


_SAMPLERS = ("always_on", "always_off", "traceidratio", "parentbased_always_on",
             "parentbased_always_off", "parentbased_traceidratio")


def sampler_from_env(env: Mapping[str, str]) -> Sampler:
    """`OTEL_TRACES_SAMPLER` (+ `_ARG`) as the SDK reads them, but a bad value
    is a `ConfigError` rather than a silent fallback to sampling everything."""
    name = env.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
    if name not in _SAMPLERS:
        raise ConfigError(f"OTEL_TRACES_SAMPLER: expected one of {', '.join(_SAMPLERS)} "
                          f"(got {name!r})")
    if name.endswith("traceidratio"):
        raw = env.get("OTEL_TRACES_SAMPLER_ARG", "1.0")
        try:
            ratio = float(raw)
        except ValueError:
            ratio = -1.0
        if not 0.0 <= ratio <= 1.0:
            raise ConfigError(f"OTEL_TRACES_SAMPLER_ARG: expected a ratio in [0, 1] "
                              f"(got {raw!r})")
        return TraceIdRatioBased(ratio) if name == "traceidratio" else ParentBasedTraceIdRatio(
            ratio)
    return {"always_on": ALWAYS_ON, "always_off": ALWAYS_OFF,
            "parentbased_always_on": ParentBased(ALWAYS_ON),
            "parentbased_always_off": ParentBased(ALWAYS_OFF)}[name]


def exporter_from_env(env: Mapping[str, str]) -> SpanExporter:
    """The OTLP span exporter for `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`; it
    reads its endpoint, headers, timeout and compression from the variables."""
    var = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL" if "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL" in env
           else "OTEL_EXPORTER_OTLP_PROTOCOL")
    protocol = env.get(var, "http/protobuf").strip().lower()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
                OTLPSpanExporter as GrpcExporter,
            )
        except ImportError as exc:
            raise ConfigError(f"{var}: grpc needs opentelemetry-exporter-otlp-proto-grpc "
                              "installed") from exc
        exporter: SpanExporter = GrpcExporter()
        return exporter
    raise ConfigError(f"{var}: expected http/protobuf or grpc (got {protocol!r})")


def resource_from_env() -> Resource:
    """`OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES`, service name
    `consumer` when neither names one."""
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return resource


class Tracing:
    """A tracer provider of our own and the tracer the service's spans come
    from. It becomes the global provider unless one was set before (then a
    handler's own `trace.get_tracer(...)` spans go to that one, still under
    our spans through the shared context).

    `shutdown()` exports what is buffered (bounded by `timeout`) and stops
    the exporter thread; it may block, so the service runs it in a thread.
    """

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer(INSTRUMENTATION)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None,
                 processor: SpanProcessor | None = None) -> Tracing:
        """Build from the `OTEL_*` variables; raises `ConfigError` naming the
        bad one. `processor` replaces the OTLP export (tests)."""
        env = os.environ if env is None else env
        provider = TracerProvider(sampler=LinkedSampler(sampler_from_env(env)),
                                  resource=resource_from_env())
        provider.add_span_processor(processor or BatchSpanProcessor(exporter_from_env(env)))
        return cls(provider)

    def install(self) -> None:
        """Make this the global provider, unless another already is, and put
        trace ids on log lines."""
        if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            trace.set_tracer_provider(self.provider)
        for handler in logging.getLogger().handlers:
            if not any(isinstance(f, TraceIdFilter) for f in handler.filters):
                handler.addFilter(TraceIdFilter())

    def shutdown(self, timeout: float = 5.0) -> None:
        self.provider.force_flush(int(timeout * 1000))
        self.provider.shutdown()


def send_span(tracing: Tracing, topic: str) -> tuple[
        list[tuple[str, bytes]], Callable[[asyncio.Future[Any]], None]]:
    """A `send <topic>` span (kind PRODUCER) for one record we produce: the
    headers carrying its context, and a callback for the send's future that
    ends the span (error status when the send failed)."""
    span = tracing.tracer.start_span(
        f"send {topic}", kind=SpanKind.PRODUCER,
        attributes={"messaging.system": "kafka", "messaging.operation.type": "send",
                    "messaging.operation.name": "send", "messaging.destination.name": topic})
    headers: list[tuple[str, bytes | None]] = []
    inject(headers, trace.set_span_in_context(span))

    def sent(fut: asyncio.Future[Any]) -> None:
        exc = asyncio.CancelledError() if fut.cancelled() else fut.exception()
        if exc is not None:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, repr(exc)))
        span.end()

    return [(k, v) for k, v in headers if v is not None], sent


class TraceIdFilter(logging.Filter):
    """Adds `trace_id` and `span_id` (hex) of the current span to a log
    record, so a message's log lines join its trace; records logged outside
    any span are left as they are."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            record.trace_id = trace.format_trace_id(ctx.trace_id)
            record.span_id = trace.format_span_id(ctx.span_id)
        return True

