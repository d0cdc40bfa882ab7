"""Wire-format values to events: the payload decoded with the writer's
schema, then validated with the same pydantic models as plain JSON. Pure
CPU, no I/O.

Avro (fastavro, schemaless with the writer's schema) becomes Python objects
validated in pydantic's Python mode — see docs/FORMATS.md for how an Avro
record maps to the envelope. JSON Schema values are JSON after the prefix and
take the plain-JSON path (`validate_json`, straight from bytes); the model,
not the writer's JSON Schema, decides what is accepted.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import fastavro
import orjson

from consumer.formats.client import RegisteredSchema
from consumer.formats.wire import PREFIX_BYTES
from schemas import (
    REGISTRY,
    Event,
    InvalidEvent,
    Reason,
    validate_decoded_with,
    validate_with,
)

AVRO = "AVRO"
JSON = "JSON"


@dataclass(frozen=True, slots=True)
class WriterSchema:
    """A registry schema ready to decode with: `avro` is fastavro's parsed
    schema (Avro only); `problem` says why values of this schema cannot be
    decoded (a type the format does not take, a schema fastavro refuses)."""

    schema_id: int
    kind: str
    avro: Any = None
    problem: str | None = None


def parse(registered: RegisteredSchema, accepted: frozenset[str]) -> WriterSchema:
    """Prepare `registered` for decoding; never raises (a schema that cannot
    be used makes its values `undecodable`, with the reason)."""
    sid, kind = registered.schema_id, registered.schema_type
    if kind not in accepted:
        return WriterSchema(sid, kind, problem=f"schema {sid} is {kind}; this service reads "
                            f"{' or '.join(sorted(accepted))} (CONSUMER_VALUE_FORMAT)")
    if kind != AVRO:
        return WriterSchema(sid, kind)
    if registered.references:
        return WriterSchema(sid, kind, problem=f"schema {sid} uses schema references, "
                            "which are not supported")
    try:
        parsed = fastavro.parse_schema(orjson.loads(registered.schema))
    except Exception as exc:  # noqa: BLE001 - any refusal: the schema is unusable
        return WriterSchema(sid, kind, problem=f"schema {sid} is not a valid Avro schema: "
                            f"{type(exc).__name__}: {exc}")
    return WriterSchema(sid, kind, avro=parsed)


def decode(value: bytes, writer: WriterSchema, *, allow_unknown: bool) -> Event:
    """The event in `value` (whose prefix names `writer`). Raises
    `InvalidEvent` carrying `writer.schema_id`: `undecodable` when the payload
    does not decode with the writer's schema, the model's reasons otherwise."""
    sid = writer.schema_id
    if writer.problem is not None:
        raise InvalidEvent(Reason.UNDECODABLE, writer.problem, schema_id=sid)
    try:
        if writer.kind == JSON:
            return validate_with(REGISTRY, value[PREFIX_BYTES:], allow_unknown=allow_unknown)
        doc = _read_avro(value, writer)
        return validate_decoded_with(REGISTRY, doc, allow_unknown=allow_unknown)
    except InvalidEvent as exc:
        if exc.reason == Reason.INVALID_JSON:  # a corrupt payload, as for Avro
            raise InvalidEvent(Reason.UNDECODABLE, f"not JSON: {exc.detail}",
                               schema_id=sid) from None
        exc.schema_id = sid
        raise


def _read_avro(value: bytes, writer: WriterSchema) -> Any:
    buf = io.BytesIO(value)
    buf.seek(PREFIX_BYTES)
    try:
        doc = fastavro.schemaless_reader(buf, writer.avro, None)
    except Exception as exc:  # noqa: BLE001 - corrupt bytes fail in many ways (EOF, index, utf-8)
        raise InvalidEvent(Reason.UNDECODABLE, f"not Avro of schema {writer.schema_id}: "
                           f"{type(exc).__name__}: {exc}") from None
    # Avro has no framing: bytes left over mean the writer used another schema.
    left = len(value) - buf.tell()
    if left:
        raise InvalidEvent(Reason.UNDECODABLE, f"{left} byte(s) left after the Avro record of "
                           f"schema {writer.schema_id}")
    return doc
