"""Samples and the registry: what the produce command and demos rely on."""

from __future__ import annotations

import random

import pytest

from schemas import REGISTRY, Event, Registry, validate
from schemas.orders import MODELS, OrderCreatedV1, OrderCreatedV2
from schemas.samples import SAMPLE_TYPES, invalid_samples, sample_bytes, sample_event


def test_sample_bytes_are_valid_keyed_by_order_and_unique() -> None:
    rng = random.Random(3)
    pairs = [sample_bytes(i, rng=rng) for i in range(300)]
    events = [validate(value) for _, value in pairs]
    assert len({e.id for e in events}) == 300
    for (key, _), event in zip(pairs, events, strict=True):
        assert key == event.key().encode()
        assert key.startswith(b"ord-")
    assert {e.type for e in events} == set(SAMPLE_TYPES)
    # Consecutive samples share orders, so a key carries a sequence of events.
    assert len({key for key, _ in pairs}) == 100


def test_each_order_starts_with_its_creation() -> None:
    first: dict[str, str] = {}
    for i in range(30):
        event = validate(sample_bytes(i)[1])
        first.setdefault(event.key(), event.type)
    assert set(first.values()) == {"order.created"}


def test_type_and_version_selection() -> None:
    assert sample_event(type="order.paid")["type"] == "order.paid"
    assert isinstance(validate(sample_bytes(type="order.created", version=1)[1]), OrderCreatedV1)
    assert isinstance(validate(sample_bytes(type="order.created")[1]), OrderCreatedV2)
    with pytest.raises(ValueError, match="unknown sample type"):
        sample_event(type="order.teleported")
    with pytest.raises(ValueError, match="no version 5"):
        sample_event(type="order.paid", version=5)


def test_same_seed_same_data_fresh_ids() -> None:
    a = sample_event(5, rng=random.Random(1))
    b = sample_event(5, rng=random.Random(1))
    assert a["data"] == b["data"]
    assert a["id"] != b["id"]


def test_invalid_samples_fail_for_their_stated_reason() -> None:
    from schemas import InvalidEvent

    seen = set()
    for reason, raw in invalid_samples():
        with pytest.raises(InvalidEvent) as info:
            validate(raw)
        assert info.value.reason == reason
        seen.add(reason)
    assert {"empty", "invalid_json", "unknown_type", "schema_violation"} <= seen


def test_registry_shape() -> None:
    assert REGISTRY.keys() == [("order.cancelled", 1), ("order.created", 1),
                               ("order.created", 2), ("order.paid", 1)]
    assert REGISTRY.latest("order.created") is OrderCreatedV2
    assert REGISTRY.get("order.created", 3) is None
    assert len(REGISTRY) == len(MODELS)
    with pytest.raises(KeyError):
        REGISTRY.latest("nope")


def test_registry_rejects_duplicates_and_untagged_models() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        Registry([OrderCreatedV1, OrderCreatedV1])
    with pytest.raises(TypeError, match="Literal"):
        Registry([Event])


def test_a_registry_of_one_model_works() -> None:
    from schemas import validate_with

    registry = Registry([OrderCreatedV1])
    event = validate_with(registry, sample_bytes(type="order.created", version=1)[1])
    assert isinstance(event, OrderCreatedV1)
