"""Valid and invalid sample events for `consumer produce`, demos and tests.

Samples follow an order's life: every order is created, most are then paid,
some cancelled, so with keys = order id a consumer in key-ordering mode sees
each order's events in sequence. Ids are uuid4, unique per call.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson

from schemas.orders import MODELS
from schemas.registry import event_key

#: The shipped (type, version) pairs `sample_event` can build.
SAMPLE_TYPES: tuple[str, ...] = ("order.created", "order.paid", "order.cancelled")
_SKUS = ("SKU-APPLE", "SKU-BREAD", "SKU-CHEESE", "SKU-DATES", "SKU-EGGS", "SKU-FIGS")
_CURRENCIES = ("EUR", "USD", "GBP")
_VERSIONS: dict[str, set[int]] = {}
for _type, _version in map(event_key, MODELS):
    _VERSIONS.setdefault(_type, set()).add(_version)


def _order_id(i: int | None, rng: random.Random) -> str:
    # A small pool of order ids (by `i`) makes keys repeat, so ordering matters.
    n = i // 3 if i is not None else rng.randrange(1_000_000)
    return f"ord-{n:08d}"


def _data(type_: str, version: int, order_id: str, rng: random.Random) -> dict[str, Any]:
    currency = rng.choice(_CURRENCIES)
    if type_ == "order.created":
        items: list[dict[str, Any]] = [
            {"sku": rng.choice(_SKUS), "quantity": rng.randint(1, 5),
             "unit_price_cents": rng.randint(50, 5_000)}
            for _ in range(rng.randint(1, 4))
        ]
        data: dict[str, Any] = {
            "order_id": order_id,
            "customer_id": f"cus-{rng.randrange(10_000):05d}",
            "items": items,
            "total_cents": sum(it["quantity"] * it["unit_price_cents"] for it in items),
            "currency": currency,
        }
        if version >= 2:
            data["channel"] = rng.choice(("web", "mobile", "store", "partner"))
        return data
    if type_ == "order.paid":
        return {"order_id": order_id, "payment_id": f"pay-{uuid.uuid4().hex[:16]}",
                "amount_cents": rng.randint(50, 20_000), "currency": currency,
                "method": rng.choice(("card", "transfer", "wallet"))}
    if type_ == "order.cancelled":
        return {"order_id": order_id, "reason": rng.choice(("out of stock", "customer request")),
                "cancelled_by": rng.choice(("customer", "merchant", "system"))}
    raise ValueError(f"no sample for event type {type_!r}")


def _cycle_type(i: int) -> str:
    # Three events per order: created, paid, then a second (split) payment or,
    # every other order, a cancellation — a tail that exercises key ordering.
    step, order = i % 3, i // 3
    if step == 0:
        return "order.created"
    if step == 2 and order % 2:
        return "order.cancelled"
    return "order.paid"


def sample_event(
    i: int | None = None,
    type: str | None = None,
    version: int | None = None,
    rng: random.Random | None = None,
    source: str = "consumer-produce",
) -> dict[str, Any]:
    """A valid event as a JSON-able dict, with a fresh uuid4 `id`.

    `i` (a sequence number) picks the type when `type` is None — created, paid,
    created, cancelled… in a cycle of three per order — and the order id, so
    consecutive samples share orders. `version` defaults to the latest.
    """
    rng = rng or random.Random()
    if type is None:
        type = _cycle_type(i) if i is not None else rng.choice(SAMPLE_TYPES)
    if type not in SAMPLE_TYPES:
        raise ValueError(f"unknown sample type {type!r}; expected one of {SAMPLE_TYPES}")
    version = version or max(_VERSIONS[type])
    if version not in _VERSIONS[type]:
        raise ValueError(f"{type} has no version {version}")
    return {
        "id": str(uuid.uuid4()),
        "type": type,
        "version": version,
        "occurred_at": datetime.now(UTC).isoformat(),
        "source": source,
        "data": _data(type, version, _order_id(i, rng), rng),
    }


def sample_bytes(
    i: int | None = None,
    type: str | None = None,
    version: int | None = None,
    rng: random.Random | None = None,
) -> tuple[bytes, bytes]:
    """(key, value) of a valid sample: key is the order id, value UTF-8 JSON."""
    event = sample_event(i, type=type, version=version, rng=rng)
    return event["data"]["order_id"].encode(), orjson.dumps(event)


def invalid_samples() -> Iterator[tuple[str, bytes]]:
    """(expected reason, value) pairs, one per kind of invalid record."""
    good = sample_event(0, type="order.created")
    yield "empty", b""
    yield "invalid_json", b'{"id": "broken", '
    yield "invalid_json", b"\xff\xfe not utf-8"
    yield "not_an_object", b"[1, 2, 3]"
    yield "unknown_type", orjson.dumps({**good, "type": "order.teleported"})
    yield "unknown_version", orjson.dumps({**good, "version": 99})
    yield "schema_violation", orjson.dumps({**good, "data": {**good["data"], "items": []}})
    yield "schema_violation", orjson.dumps({**good, "occurred_at": "2024-01-01T00:00:00"})
