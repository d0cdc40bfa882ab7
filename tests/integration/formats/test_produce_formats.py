"""`consumer produce --format avro|json_schema` against the real registry:
what it writes reads back through Confluent's own deserializers (an outside
client) as valid events of the shipped models."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from devtools.registry import LocalSchemaRegistry
from schemas import validate_dict
from tests.support.kafka import NewTopicFactory

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
COUNT = 30


def read_values(bootstrap: str, topic: str, count: int) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{topic}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    values: list[bytes] = []
    try:
        for _ in range(600):
            if len(values) >= count:
                break
            msg = consumer.poll(0.2)
            value = None if msg is None or msg.error() is not None else msg.value()
            if value is not None:
                values.append(value)
    finally:
        consumer.close()
    return values


def deserialized(registry_url: str, topic: str, values: list[bytes], fmt: str) -> list[Any]:
    ctx = SerializationContext(topic, MessageField.VALUE)
    with SchemaRegistryClient({"url": registry_url}) as client:
        if fmt == "avro":
            avro = AvroDeserializer(client)
            return [avro(v, ctx) for v in values]
        # No reader schema: the writer's, fetched by the id in each value.
        json_schema = JSONDeserializer(None, schema_registry_client=client)
        return [json_schema(v, ctx) for v in values]


@pytest.mark.parametrize("fmt", ["avro", "json_schema"])
async def test_produce_writes_what_confluents_deserializers_read(
        kafka_bootstrap: str, new_topic: NewTopicFactory,
        schema_registry: LocalSchemaRegistry, fmt: str) -> None:
    topic = await new_topic("produce-fmt")
    env = {**os.environ, "CONSUMER_BOOTSTRAP_SERVERS": kafka_bootstrap}
    argv = [sys.executable, "-m", "consumer.cli", "produce", "--topic", topic, "--count",
            str(COUNT), "--format", fmt, "--schema-registry-url", schema_registry.url]
    done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, env=env,
                                   cwd=ROOT, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode()
    values = await asyncio.to_thread(read_values, kafka_bootstrap, topic, COUNT)
    assert len(values) == COUNT
    assert all(v[0] == 0 for v in values)  # the wire format's magic byte
    docs = deserialized(schema_registry.url, topic, values, fmt)
    if fmt == "avro":  # timestamp-millis reads back as a datetime
        docs = [{**d, "occurred_at": d["occurred_at"].isoformat()} for d in docs]
    events = [validate_dict(d) for d in docs]
    assert len({e.id for e in events}) == COUNT


def test_produce_without_a_registry_url_exits_2_before_dialing() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSUMER_")}
    done = subprocess.run(
        [sys.executable, "-m", "consumer.cli", "produce", "--topic", "t", "--format", "avro",
         "--bootstrap-servers", "127.0.0.1:1"],
        capture_output=True, env=env, cwd=ROOT, timeout=60, check=False)
    assert done.returncode == 2, done.stderr.decode()
    assert b"--format avro needs --schema-registry-url" in done.stderr
