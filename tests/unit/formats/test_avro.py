"""The Avro ↔ envelope mapping (docs/FORMATS.md) and the shipped Avro
schemas, held to the models: every sample encodes with its schema and
decodes to the same event."""

from __future__ import annotations

import io
import json
import random
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import fastavro
import pytest

from consumer.formats.client import RegisteredSchema
from consumer.formats.decode import AVRO, JSON, decode, parse
from consumer.formats.wire import frame
from schemas import REGISTRY, InvalidEvent, validate_dict
from schemas.avro_schemas import AVRO_DIR, avro_record, avro_schema
from schemas.registry import event_key
from schemas.samples import SAMPLE_TYPES, sample_event

ACCEPT = frozenset({AVRO, JSON})


def encode(schema: dict[str, Any], record: dict[str, Any], schema_id: int = 3) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), record)
    return frame(schema_id, buf.getvalue())


def writer(schema: dict[str, Any], schema_id: int = 3, kind: str = AVRO) -> Any:
    return parse(RegisteredSchema(schema_id, kind, json.dumps(schema)), ACCEPT)


def model_fields(model: Any) -> set[str]:
    return set(model.model_fields)


@pytest.mark.parametrize("key", REGISTRY.keys())
def test_every_model_has_a_shipped_avro_schema_with_its_fields(key: tuple[str, int]) -> None:
    schema = avro_schema(*key)
    model = REGISTRY.get(*key)
    assert model is not None
    fields = {f["name"]: f for f in schema["fields"]}
    assert set(fields) == model_fields(model)
    assert fields["type"]["default"] == key[0]
    assert fields["version"]["default"] == key[1]
    data_fields = {f["name"] for f in fields["data"]["type"]["fields"]}
    assert data_fields == model_fields(model.model_fields["data"].annotation)


def test_no_shipped_avro_schema_is_left_without_a_model() -> None:
    shipped = {p.name for p in AVRO_DIR.glob("*.avsc")}
    assert shipped == {f"{t}.v{v}.avsc" for t, v in map(event_key, REGISTRY)}


@pytest.mark.parametrize(("type_", "version"), REGISTRY.keys())
def test_samples_round_trip_through_their_avro_schema(type_: str, version: int) -> None:
    assert type_ in SAMPLE_TYPES
    rng = random.Random(5)
    for i in range(20):
        event = validate_dict(sample_event(i, type=type_, version=version, rng=rng))
        value = encode(avro_schema(type_, version), avro_record(event))
        back = decode(value, writer(avro_schema(type_, version)), allow_unknown=False)
        # timestamp-millis: the writer keeps milliseconds.
        millis = event.occurred_at.replace(microsecond=event.occurred_at.microsecond // 1000 * 1000)
        assert back == event.model_copy(update={"occurred_at": millis})


def envelope(data_type: Any, *, occurred: Any = None) -> dict[str, Any]:
    return {"type": "record", "name": "E", "fields": [
        {"name": "id", "type": "string"}, {"name": "type", "type": "string"},
        {"name": "version", "type": "int"},
        {"name": "occurred_at", "type": occurred or {"type": "long",
                                                      "logicalType": "timestamp-millis"}},
        {"name": "source", "type": ["null", "string"], "default": None},
        {"name": "data", "type": data_type}]}


PAID = {"type": "record", "name": "D", "fields": [
    {"name": "order_id", "type": "string"}, {"name": "payment_id", "type": "string"},
    {"name": "amount_cents", "type": "long"}, {"name": "currency", "type": "string"},
    {"name": "method", "type": "string"}]}
NOW = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
PAID_DATA = {"order_id": "o-1", "payment_id": "p-1", "amount_cents": 250, "currency": "EUR",
             "method": "card"}


def paid(**over: Any) -> dict[str, Any]:
    return {"id": "e-1", "type": "order.paid", "version": 1, "occurred_at": NOW,
            "source": None, "data": PAID_DATA, **over}


def test_timestamp_millis_and_micros_read_as_utc_datetimes() -> None:
    for logical in ("timestamp-millis", "timestamp-micros"):
        schema = envelope(PAID, occurred={"type": "long", "logicalType": logical})
        event = decode(encode(schema, paid()), writer(schema), allow_unknown=False)
        assert event.occurred_at == NOW


def test_a_null_union_member_is_none_and_a_string_member_its_value() -> None:
    schema = envelope(PAID)
    assert decode(encode(schema, paid()), writer(schema), allow_unknown=False).source is None
    event = decode(encode(schema, paid(source="shop")), writer(schema), allow_unknown=False)
    assert event.source == "shop"


def test_a_decimal_is_refused_where_the_model_wants_integer_cents() -> None:
    decimal = {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}
    data = {**PAID, "fields": [*PAID["fields"][:2], {"name": "amount_cents", "type": decimal},
                               *PAID["fields"][3:]]}
    schema = envelope(data)
    record = paid(data={**PAID_DATA, "amount_cents": Decimal("2.50")})
    with pytest.raises(InvalidEvent) as caught:
        decode(encode(schema, record), writer(schema), allow_unknown=False)
    assert caught.value.reason == "schema_violation"
    assert "amount_cents" in caught.value.detail


def test_a_timestamp_as_a_string_is_refused_like_any_wrong_type() -> None:
    schema = envelope(PAID, occurred="string")
    with pytest.raises(InvalidEvent) as caught:
        decode(encode(schema, paid(occurred_at=NOW.isoformat())), writer(schema),
               allow_unknown=False)
    assert caught.value.reason == "schema_violation"


def test_type_and_version_route_to_the_model_and_unknown_ones_are_named() -> None:
    schema = envelope(PAID)
    with pytest.raises(InvalidEvent) as caught:
        decode(encode(schema, paid(type="order.refunded")), writer(schema), allow_unknown=False)
    assert caught.value.reason == "unknown_type"
    event = decode(encode(schema, paid(type="order.refunded")), writer(schema),
                   allow_unknown=True)
    assert type(event).__name__ == "GenericEvent"


@pytest.mark.parametrize(
    ("value", "why"),
    [(frame(3, b"\xff\xff\xff"), "not Avro"),
     (frame(3, b""), "not Avro"),
     (None, "left after")],  # filled below: a valid record plus trailing bytes
)
def test_corrupt_avro_is_undecodable_with_the_schema_id(value: bytes | None, why: str) -> None:
    schema = envelope(PAID)
    if value is None:
        value = encode(schema, paid()) + b"\x00\x01"
    with pytest.raises(InvalidEvent) as caught:
        decode(value, writer(schema), allow_unknown=False)
    assert caught.value.reason == "undecodable"
    assert why in caught.value.detail
    assert caught.value.schema_id == 3


def test_a_schema_of_a_type_not_read_makes_its_values_undecodable() -> None:
    only_avro = parse(RegisteredSchema(9, "PROTOBUF", "syntax = 'proto3';"), frozenset({AVRO}))
    with pytest.raises(InvalidEvent) as caught:
        decode(frame(9, b"\x00"), only_avro, allow_unknown=False)
    assert caught.value.reason == "undecodable"
    assert "schema 9 is PROTOBUF" in caught.value.detail
    assert caught.value.schema_id == 9


def test_json_schema_values_are_json_after_the_prefix() -> None:
    event = validate_dict(sample_event(0, type="order.cancelled"))
    json_writer = parse(RegisteredSchema(5, JSON, "{}"), ACCEPT)
    value = frame(5, event.model_dump_json().encode())
    assert decode(value, json_writer, allow_unknown=False) == event
    with pytest.raises(InvalidEvent) as caught:
        decode(frame(5, b"{not json"), json_writer, allow_unknown=False)
    assert (caught.value.reason, caught.value.schema_id) == ("undecodable", 5)


def test_json_schema_does_not_read_avro_schemas() -> None:
    avro_writer = parse(RegisteredSchema(6, AVRO, json.dumps(envelope(PAID))), frozenset({JSON}))
    with pytest.raises(InvalidEvent) as caught:
        decode(encode(envelope(PAID), paid(), schema_id=6), avro_writer, allow_unknown=False)
    assert caught.value.reason == "undecodable"
    assert "schema 6 is AVRO; this service reads JSON" in caught.value.detail
