"""validate(): every shipped event validates; every bad input gets its reason."""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

import schemas
from consumer.gates.retry import RetryPolicy
from schemas import REGISTRY, Event, GenericEvent, InvalidEvent, SchemaError, validate
from schemas.orders import OrderCreatedV1, OrderCreatedV2, OrderPaidV1
from schemas.samples import sample_event


def reason_of(raw: Any, **kwargs: Any) -> str:
    with pytest.raises(InvalidEvent) as info:
        validate(raw, **kwargs)
    return info.value.reason


def good(**overrides: Any) -> dict[str, Any]:
    return {**sample_event(0, type="order.created", version=1, rng=random.Random(7)),
            **overrides}


@pytest.mark.parametrize(("type_", "version"), REGISTRY.keys())
def test_every_registered_pair_validates_to_its_model(type_: str, version: int) -> None:
    event = validate(orjson.dumps(sample_event(type=type_, version=version)))
    assert type(event) is REGISTRY.get(type_, version)
    assert (event.type, event.version) == (type_, version)
    assert isinstance(event.occurred_at, datetime)
    assert event.occurred_at.tzinfo is not None


def test_event_surface() -> None:
    raw = orjson.dumps(good(source="shop"))
    event = validate(raw)
    assert isinstance(event, OrderCreatedV1)
    assert event.source == "shop"
    assert event.key() == event.data.order_id
    data = event.data_dict()
    assert data["items"][0]["quantity"] >= 1
    assert orjson.loads(orjson.dumps(data)) == data  # JSON-able
    assert validate(orjson.dumps(event.to_dict())) == event  # round trip


def test_events_are_frozen() -> None:
    event = validate(orjson.dumps(good()))
    with pytest.raises(ValidationError):
        event.id = "other"


def test_unknown_extra_fields_are_ignored() -> None:
    doc = good(trace_id="abc")
    doc["data"] = {**doc["data"], "gift_wrap": True}
    event = validate(orjson.dumps(doc))
    assert "trace_id" not in event.to_dict()
    assert "gift_wrap" not in event.data_dict()


def test_v2_adds_a_defaulted_field() -> None:
    doc = good(version=2)
    event = validate(orjson.dumps(doc))
    assert isinstance(event, OrderCreatedV2)
    assert event.data.channel == "web"


def test_accepts_bytearray_and_memoryview() -> None:
    raw = orjson.dumps(good())
    assert validate(bytearray(raw)) == validate(memoryview(raw))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "empty"),
        (b"", "empty"),
        (b"   \n\t ", "empty"),
        (b"{", "invalid_json"),
        (b"\xff\xfe{}", "invalid_json"),
        (b'{"id": "\xc3\x28"}', "invalid_json"),  # invalid UTF-8 inside a string
        (b'{"id": "\\ud800"}', "invalid_json"),  # lone surrogate
        (b"[1, 2]", "not_an_object"),
        (b"42", "not_an_object"),
        (b'"text"', "not_an_object"),
        (b"null", "not_an_object"),
        (b"true", "not_an_object"),
        (b"NaN", "not_an_object"),
        (b"[" * 10_000 + b"]" * 10_000, "too_deep"),
        (b'{"a":' * 5_000 + b"1" + b"}" * 5_000, "too_deep"),
        (b"{}", "schema_violation"),
        (b'{"type": "order.created"}', "schema_violation"),
        (b'{"type": "order.teleported", "version": 1}', "unknown_type"),
        (b'{"type": 5}', "unknown_type"),
        (b'{"type": "order.created", "version": 9}', "unknown_version"),
        (b'{"type": "order.paid", "version": 9}', "unknown_version"),
        (b'{"type": "order.created", "version": "1"}', "unknown_version"),
    ],
)
def test_bad_inputs_have_their_reason(raw: bytes | None, reason: str) -> None:
    assert reason_of(raw) == reason


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("id"),
        lambda d: d.update(id=""),
        lambda d: d.update(occurred_at="2024-01-01T00:00:00"),  # naive: no timezone
        lambda d: d.update(occurred_at="yesterday"),
        lambda d: d["data"].update(total_cents="450"),  # strict: no string numbers
        lambda d: d["data"].update(total_cents=-1),
        lambda d: d["data"].update(currency="XXX"),
        lambda d: d["data"].update(items=[]),
        lambda d: d["data"]["items"][0].update(quantity=0),
        lambda d: d.update(data=[]),
    ],
)
def test_schema_violations(mutate: Any) -> None:
    doc = good()
    mutate(doc)
    assert reason_of(orjson.dumps(doc)) == "schema_violation"


def test_nan_and_infinity_are_refused() -> None:
    raw = orjson.dumps(good()).replace(b'"total_cents":', b'"total_cents":NaN,"x":')
    assert reason_of(raw) in ("schema_violation", "invalid_json")
    generic = b'{"id":"a","type":"x.y","version":1,"occurred_at":"2024-01-01T00:00:00Z",' \
              b'"data":{"v":[1,{"w":Infinity}]}}'
    assert reason_of(generic, allow_unknown=True) == "schema_violation"


def test_too_large_is_refused_before_parsing() -> None:
    assert reason_of(b"{" + b" " * (schemas.MAX_EVENT_BYTES + 1)) == "too_large"
    assert reason_of(orjson.dumps(good()), max_bytes=10) == "too_large"


def test_huge_valid_looking_payload_within_limit() -> None:
    doc = good()
    doc["data"] = {**doc["data"], "padding": "x" * 900_000}
    assert isinstance(validate(orjson.dumps(doc)), OrderCreatedV1)


def test_not_bytes_is_unreadable() -> None:
    assert reason_of(12345) == "unreadable"  # a caller bug, still only InvalidEvent


def test_allow_unknown_passes_a_generic_envelope() -> None:
    doc = good(type="invoice.sent", version=3)
    doc["data"] = {"invoice": "i-1", "lines": [1, 2.5, None]}
    with pytest.raises(InvalidEvent):
        validate(orjson.dumps(doc))
    event = validate(orjson.dumps(doc), allow_unknown=True)
    assert isinstance(event, GenericEvent)
    assert event.data_dict() == doc["data"]
    assert event.key() == doc["id"]
    # An unknown version of a known type passes as generic too.
    known = good(version=7)
    assert isinstance(validate(orjson.dumps(known), allow_unknown=True), GenericEvent)
    # ...but the envelope itself must still hold.
    assert reason_of(orjson.dumps({**doc, "occurred_at": "x"}), allow_unknown=True) \
        == "schema_violation"


def test_known_types_stay_typed_with_allow_unknown() -> None:
    event = validate(orjson.dumps(sample_event(type="order.paid")), allow_unknown=True)
    assert isinstance(event, OrderPaidV1)


def test_invalid_event_contract() -> None:
    doc = good()
    doc["data"]["items"] = [{"sku": "", "quantity": -1, "unit_price_cents": "x"}] * 500
    with pytest.raises(InvalidEvent) as info:
        validate(orjson.dumps(doc))
    exc = info.value
    assert isinstance(exc, SchemaError)
    assert exc.retriable is False
    assert not RetryPolicy().retriable(exc)
    assert exc.reason == "schema_violation"
    assert exc.detail.startswith("order.created v1: data.items.0.sku")
    assert "more)" in exc.detail
    assert len(exc.detail.encode("utf-8")) <= 1024


def test_detail_never_echoes_field_values() -> None:
    doc = good()
    doc["data"]["customer_id"] = "secret-" + "y" * 100
    with pytest.raises(InvalidEvent) as info:
        validate(orjson.dumps(doc))
    assert "secret" not in info.value.detail


def test_event_is_the_common_base() -> None:
    for model in REGISTRY:
        assert issubclass(model, Event)


def test_validate_dict() -> None:
    from schemas import validate_dict

    doc = good()
    assert validate_dict(doc) == validate(orjson.dumps(doc))
    with pytest.raises(InvalidEvent) as info:
        validate_dict({**doc, "data": {1, 2}})
    assert info.value.reason == "unreadable"
    with pytest.raises(InvalidEvent) as info:
        validate_dict({**doc, "type": "nope"})
    assert info.value.reason == "unknown_type"
