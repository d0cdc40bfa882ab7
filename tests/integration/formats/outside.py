"""The outside producer of the value-format tests: confluent-kafka's own
Producer with its own Schema Registry serializers (AvroSerializer,
JSONSerializer) — what a team's producers run, not our code. Blocking: call
through `asyncio.to_thread`."""

from __future__ import annotations

import json
import random
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.schema_registry import (
    SchemaRegistryClient,
    topic_record_subject_name_strategy,
)
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from schemas import REGISTRY, Event, validate_dict
from schemas.avro_schemas import avro_record, avro_schema
from schemas.export import documents, file_name
from schemas.samples import sample_event


def sample_events(count: int, seed: int = 7) -> list[Event]:
    """`count` valid sample events of every shipped type (latest versions)."""
    rng = random.Random(seed)
    return [validate_dict(sample_event(i, rng=rng)) for i in range(count)]


def _registry(url: str, auth: tuple[str, str] | None = None) -> SchemaRegistryClient:
    conf: dict[str, Any] = {"url": url}
    if auth is not None:
        conf["basic.auth.user.info"] = f"{auth[0]}:{auth[1]}"
    return SchemaRegistryClient(conf)


def produce_raw(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for key, value in records:
        producer.produce(topic, value=value, key=key)
    if producer.flush(60) != 0:
        raise RuntimeError("records not delivered")


def avro_values(registry_url: str, topic: str, events: list[Event],
                schemas: dict[tuple[str, int], dict[str, Any]] | None = None,
                extra_data: dict[str, Any] | None = None) -> list[tuple[bytes | None, bytes]]:
    """Each event serialized by confluent-kafka's AvroSerializer with its
    shipped schema (or the one in `schemas`), subjects `<topic>-<record name>`;
    `extra_data` fields are added to each record's `data` (a newer writer
    schema's)."""
    with _registry(registry_url) as client:
        return _avro(client, topic, events, schemas or {}, extra_data or {})


def _avro(client: SchemaRegistryClient, topic: str, events: list[Event],
          schemas: dict[tuple[str, int], dict[str, Any]], extra_data: dict[str, Any],
          ) -> list[tuple[bytes | None, bytes]]:
    serializers: dict[tuple[str, int], AvroSerializer] = {}
    out: list[tuple[bytes | None, bytes]] = []
    ctx = SerializationContext(topic, MessageField.VALUE)
    for event in events:
        key = (event.type, event.version)
        if key not in serializers:
            schema = schemas.get(key) or avro_schema(*key)
            serializers[key] = AvroSerializer(
                client, json.dumps(schema), lambda obj, _ctx: obj,
                conf={"subject.name.strategy": topic_record_subject_name_strategy})
        record = avro_record(event)
        record["data"] = {**record["data"], **extra_data}
        value = serializers[key](record, ctx)
        assert value is not None
        out.append((event.key().encode(), value))
    return out


def json_schema_values(registry_url: str, topic: str, events: list[Event]
                       ) -> list[tuple[bytes | None, bytes]]:
    """Each event serialized by confluent-kafka's JSONSerializer with our
    exported JSON Schema of its (type, version)."""
    with _registry(registry_url) as client:
        return _json(client, topic, events)


def _json(client: SchemaRegistryClient, topic: str, events: list[Event],
          ) -> list[tuple[bytes | None, bytes]]:
    docs = documents(REGISTRY)
    serializers: dict[tuple[str, int], JSONSerializer] = {}
    out: list[tuple[bytes | None, bytes]] = []
    ctx = SerializationContext(topic, MessageField.VALUE)
    for event in events:
        key = (event.type, event.version)
        if key not in serializers:
            doc = docs[file_name(*key)]
            serializers[key] = JSONSerializer(
                json.dumps(doc), client, lambda obj, _ctx: obj,
                conf={"subject.name.strategy": lambda _ctx, _name, k=key:
                      f"{topic}-{k[0]}.v{k[1]}"})
        value = serializers[key](event.to_dict(), ctx)
        assert value is not None
        out.append((event.key().encode(), value))
    return out
