"""OpenTelemetry set-up: the Kafka-headers carrier, settings that exit 2
instead of falling back, trace ids on log lines, the producer's send span."""

from __future__ import annotations

import asyncio
import logging
import sys

import orjson
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from consumer.errors import ConfigError
from consumer.observability.logging import JsonFormatter
from consumer.observability.otel import (
    HEADERS_GETTER,
    TraceIdFilter,
    Tracing,
    exporter_from_env,
    extract,
    inject,
    resource_from_env,
    sampler_from_env,
    send_span,
)
from consumer.observability.tracing import start_tracing

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_headers_carrier_reads_and_replaces() -> None:
    headers: list[tuple[str, bytes | None]] = [("Traceparent", TRACEPARENT.encode()),
                                               ("empty", None), ("x", b"1")]
    assert HEADERS_GETTER.get(headers, "traceparent") == [TRACEPARENT]
    assert HEADERS_GETTER.get(headers, "empty") is None
    assert HEADERS_GETTER.keys(headers) == ["Traceparent", "empty", "x"]
    context = extract(headers)
    span_context = trace.get_current_span(context).get_span_context()
    assert span_context.is_remote
    assert span_context.trace_id == 0x4BF92F3577B34DA6A3CE929D0E0E4736
    inject(headers, context)  # the same context again: one header, not two
    assert [k for k, _ in headers].count("traceparent") == 1
    assert "Traceparent" not in [k for k, _ in headers]
    assert ("x", b"1") in headers


def test_malformed_traceparent_is_ignored() -> None:
    context = extract([("traceparent", b"00-zz-yy-01")])
    assert not trace.get_current_span(context).get_span_context().is_valid


@pytest.mark.parametrize(("env", "variable"), [
    ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER"),
    ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "half"},
     "OTEL_TRACES_SAMPLER_ARG"),
    ({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"},
     "OTEL_TRACES_SAMPLER_ARG"),
])
def test_bad_sampler_settings_name_their_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=f"^{variable}: "):
        sampler_from_env(env)


def test_sampler_follows_the_variables() -> None:
    assert "TraceIdRatioBased{0.01}" in sampler_from_env(
        {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
         "OTEL_TRACES_SAMPLER_ARG": "0.01"}).get_description()
    assert sampler_from_env({}).get_description().startswith("ParentBased{root:AlwaysOnSampler")


def test_bad_protocol_names_its_variable() -> None:
    with pytest.raises(ConfigError, match=r"^OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "):
        exporter_from_env({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"})


def test_service_name_defaults_to_consumer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    assert resource_from_env().attributes["service.name"] == "consumer"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "orders-consumer")
    assert resource_from_env().attributes["service.name"] == "orders-consumer"


def test_start_tracing_none_is_nothing() -> None:
    assert start_tracing("none") is None


def test_otlp_without_the_extra_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "consumer.observability.otel", None)  # import fails
    with pytest.raises(ConfigError, match=r"^CONSUMER_TRACING: otlp needs the otel extra"):
        start_tracing("otlp")


def test_log_lines_carry_the_current_trace_and_span() -> None:
    tracing = Tracing.from_env({}, processor=SimpleSpanProcessor(InMemorySpanExporter()))
    formatter, flt = JsonFormatter(), TraceIdFilter()

    def line(msg: str) -> dict[str, object]:
        rec = logging.makeLogRecord({"msg": msg, "levelno": logging.INFO, "levelname": "INFO"})
        assert flt.filter(rec)
        parsed: dict[str, object] = orjson.loads(formatter.format(rec))
        return parsed

    outside = line("outside")
    assert "trace_id" not in outside
    with tracing.tracer.start_as_current_span("process t") as span:
        inside = line("inside")
    ctx = span.get_span_context()
    assert inside["trace_id"] == f"{ctx.trace_id:032x}"
    assert inside["span_id"] == f"{ctx.span_id:016x}"


async def test_send_span_puts_its_context_in_the_headers() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing.from_env({}, processor=SimpleSpanProcessor(exporter))
    headers, sent = send_span(tracing, "events")
    fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    fut.add_done_callback(sent)
    fut.set_result(None)
    failed: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    headers2, sent2 = send_span(tracing, "events")
    failed.add_done_callback(sent2)
    failed.set_exception(OSError("broker down"))
    failed.exception()
    await asyncio.sleep(0)
    ok, bad = exporter.get_finished_spans()
    assert ok.name == "send events"
    assert ok.kind is SpanKind.PRODUCER
    version, trace_id, span_id, flags = dict(headers)["traceparent"].decode().split("-")
    assert (version, trace_id, span_id) == (
        "00", f"{ok.context.trace_id:032x}", f"{ok.context.span_id:016x}")
    assert int(flags, 16) & 1  # sampled
    assert bad.status.status_code is StatusCode.ERROR
    assert dict(headers2)["traceparent"] != dict(headers)["traceparent"]
