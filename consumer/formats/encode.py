"""The producer side of the wire format, for `consumer produce --format`:
register the shipped schemas of the events to send, then frame each event
as Confluent's serializers do (zero byte, schema id, Avro binary or JSON).

Subjects follow Confluent's TopicRecordNameStrategy — `<topic>-<record name>`
(Avro: the record's full name; JSON Schema: `<type>.v<version>`) — so the
several event types of one topic never meet a compatibility check against
each other, whatever the registry's default compatibility."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from typing import Any

import fastavro
import orjson

from consumer.formats.client import RegistryClient
from consumer.formats.wire import frame
from schemas import REGISTRY, Event
from schemas.avro_schemas import avro_record, avro_schema
from schemas.export import documents, file_name

#: Encodes one validated event into a record value.
Encoder = Callable[[Event], bytes]


def subject(topic: str, value_format: str, type_: str, version: int) -> str:
    if value_format == "avro":
        schema = avro_schema(type_, version)
        return f"{topic}-{schema['namespace']}.{schema['name']}"
    return f"{topic}-{type_}.v{version}"


async def registered_encoder(client: RegistryClient, topic: str, value_format: str,
                             keys: Iterable[tuple[str, int]] | None = None) -> Encoder:
    """Register the schema of every (type, version) in `keys` (default: all
    shipped) and return the encoder. Raises `RegistryError` when the
    registry cannot answer, `KeyError` for an event without a shipped schema."""
    if value_format not in ("avro", "json_schema"):
        raise ValueError(f"cannot encode {value_format!r}")
    ids: dict[tuple[str, int], int] = {}
    parsed: dict[tuple[str, int], Any] = {}
    json_docs = documents(REGISTRY) if value_format == "json_schema" else {}
    for type_, version in sorted(set(keys or REGISTRY.keys())):
        name = subject(topic, value_format, type_, version)
        if value_format == "avro":
            schema = avro_schema(type_, version)
            ids[type_, version] = await client.register(name, json.dumps(schema), "AVRO")
            parsed[type_, version] = fastavro.parse_schema(schema)
        else:
            doc = json_docs[file_name(type_, version)]
            ids[type_, version] = await client.register(name, json.dumps(doc), "JSON")

    def encode(event: Event) -> bytes:
        key = (event.type, event.version)
        if value_format == "json_schema":
            return frame(ids[key], orjson.dumps(event.to_dict()))
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, parsed[key], avro_record(event))
        return frame(ids[key], buf.getvalue())

    return encode
