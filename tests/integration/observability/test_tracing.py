"""Traces in a real Jaeger (built once from the Go module proxy, on
127.0.0.1): events produced with known trace ids through the real broker
into `consumer run` with CONSUMER_TRACING=otlp come back from Jaeger's query
API with our spans under the right parents."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from devtools.harness import (
    Service,
    committed_all,
    create_topics,
    read_topic,
    wait_until,
)
from devtools.jaeger import LocalJaeger
from devtools.ports import project_root
from schemas.samples import invalid_samples, sample_event
from tests.support.processes import listening

pytestmark = pytest.mark.integration

SERVICE = "consumer-it"
VALID = 6


@pytest.fixture(scope="module")
async def jaeger() -> AsyncIterator[LocalJaeger]:
    server = LocalJaeger()
    try:
        await asyncio.to_thread(server.start)
        yield server
    finally:
        await asyncio.to_thread(server.stop)



async def test_jaeger_listens_on_loopback_only(jaeger: LocalJaeger) -> None:
    assert jaeger.pid is not None
    assert listening(jaeger.pid) == {("127.0.0.1", jaeger.otlp_port),
                                     ("127.0.0.1", jaeger.query_port),
                                     ("127.0.0.1", jaeger.grpc_port)}


def otel_env(jaeger: LocalJaeger, service: str) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_endpoint, "OTEL_SERVICE_NAME": service,
            "OTEL_BSP_SCHEDULE_DELAY": "200", "OTEL_TRACES_SAMPLER": "parentbased_always_on"}


def tags(span: dict[str, Any]) -> dict[str, Any]:
    return {t["key"]: t["value"] for t in span.get("tags", [])}


def parent_of(span: dict[str, Any]) -> str | None:
    refs = [r["spanID"] for r in span.get("references", []) if r["refType"] == "CHILD_OF"]
    return refs[0] if refs else None


def spans_by_name(trace: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for span in trace["spans"]:
        out.setdefault(span["operationName"], []).append(span)
    return out


def service_of(trace: dict[str, Any], span: dict[str, Any]) -> str:
    name: str = trace["processes"][span["processID"]]["serviceName"]
    return name


async def produce_traced(bootstrap: str, topic: str) -> dict[str, tuple[str, bool]]:
    """VALID valid events and one invalid, each with a traceparent of a trace
    id of ours: {trace id: (parent span id, valid)}."""
    sent: dict[str, tuple[str, bool]] = {}
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for n in range(VALID + 1):
            trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
            valid = n < VALID
            if valid:
                event = sample_event(n)
                key, value = event["data"]["order_id"].encode(), orjson.dumps(event)
            else:
                key, value = b"bad", next(v for r, v in invalid_samples() if r == "invalid_json")
            headers = [("traceparent", f"00-{trace_id}-{parent}-01".encode())]
            await producer.send_and_wait(topic, value, key=key, headers=headers)
            sent[trace_id] = (parent, valid)
    finally:
        await producer.stop()
    return sent


async def test_traces_reach_jaeger_under_the_producers_spans(
        kafka_bootstrap: str, jaeger: LocalJaeger, tmp_path: Path) -> None:
    topic, dlq = await create_topics(kafka_bootstrap, partitions=2)
    group = f"trace-{uuid.uuid4().hex[:8]}"
    sent = await produce_traced(kafka_bootstrap, topic)
    # Three more from `consumer produce`, which starts their traces itself.
    cli_env = {**os.environ, "CONSUMER_TRACING": "otlp", **otel_env(jaeger, "producer-cli")}
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "consumer.cli", "produce", "--topic", topic,
                         "--count", "3", "--bootstrap-servers", kafka_bootstrap],
        env=cli_env, cwd=project_root(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr

    svc = Service(bootstrap_servers=kafka_bootstrap, topics=topic, dlq_topic=dlq,
                  group_id=group, sink_url=f"sqlite:///{tmp_path / 'traced.db'}",
                  tracing="otlp", commit_interval="0.5", batch_max_latency="0.1")
    svc.env.update(otel_env(jaeger, SERVICE))
    svc.start()
    try:
        await wait_until(lambda: committed_all(kafka_bootstrap, group, topic), 90,
                         "every record committed", svc)
    finally:
        assert svc.terminate() == 0, svc.log_tail()  # shutdown exports what is buffered

    async def traced(trace_id: str) -> dict[str, Any]:
        found: dict[str, Any] = {}

        async def arrived() -> bool:
            trace = await asyncio.to_thread(jaeger.trace, trace_id)
            if trace and "process " + topic in spans_by_name(trace):
                found.update(trace)
                return True
            return False

        await wait_until(arrived, 30, f"trace {trace_id} in jaeger:\n{jaeger.log()}")
        return found

    process_ids: set[str] = set()
    for trace_id, (parent, valid) in sent.items():
        trace = await traced(trace_id)
        names = spans_by_name(trace)
        (process,) = names[f"process {topic}"]
        assert service_of(trace, process) == SERVICE
        assert parent_of(process) == parent  # the producer's span, from the header
        found = tags(process)
        assert found["span.kind"] == "consumer"
        assert found["messaging.system"] == "kafka"
        assert found["messaging.destination.name"] == topic
        assert found["messaging.consumer.group.name"] == group
        assert isinstance(found["messaging.kafka.offset"], int)
        (validate,) = names["validate"]
        assert parent_of(validate) == process["spanID"]
        if valid:
            process_ids.add(process["spanID"])
            assert found["consumer.outcome"] == "ok"
            assert [parent_of(s) for s in names["handle"]] == [process["spanID"]]
        else:
            assert found["consumer.outcome"] == "invalid"
            assert found["error"] is True
            assert found["error.type"] == "InvalidEvent"
            assert tags(validate)["error"] is True
            (send,) = names[f"send {dlq}"]
            assert parent_of(send) == process["spanID"]
            assert tags(send)["span.kind"] == "producer"
    assert len(process_ids) == VALID

    # The dead-letter record carries the producer's traceparent, and only it.
    (dead,) = await read_topic(kafka_bootstrap, dlq)
    invalid_trace = next(t for t, (_, valid) in sent.items() if not valid)
    traceparents = [v for k, v in dead.headers if k == "traceparent"]
    assert traceparents == [f"00-{invalid_trace}-{sent[invalid_trace][0]}-01".encode()]

    # Sink writes: their own traces, linked (FOLLOWS_FROM) to the messages.
    query = urllib.parse.urlencode({"service": SERVICE, "operation": "write sqlite",
                                    "limit": "50", "lookback": "1h"})
    writes = [span for trace in (await asyncio.to_thread(jaeger.api, f"/api/traces?{query}"))[
        "data"] for span in trace["spans"] if span["operationName"] == "write sqlite"]
    assert writes
    linked = {r["spanID"] for span in writes for r in span["references"]
              if r["refType"] == "FOLLOWS_FROM"}
    assert process_ids <= linked
    assert all(parent_of(span) is None for span in writes)

    # `consumer produce --tracing otlp`: whole traces, producer to consumer.
    cli_records = [r for r in await read_topic(kafka_bootstrap, topic)
                   if dict(r.headers).get("traceparent") and
                   dict(r.headers)["traceparent"].split(b"-")[1].decode() not in sent]
    assert len(cli_records) == 3
    for rec in cli_records:
        _, trace_id, send_id, _ = dict(rec.headers)["traceparent"].decode().split("-")
        trace = await traced(trace_id)
        names = spans_by_name(trace)
        (send,) = names[f"send {topic}"]
        assert send["spanID"] == send_id
        assert service_of(trace, send) == "producer-cli"
        (process,) = names[f"process {topic}"]
        assert parent_of(process) == send_id
