"""The shipped demonstration domain: orders.

`order.created`, `order.paid` and `order.cancelled` at version 1, and
`order.created` at version 2 to show evolution: v2 adds `channel` (with a
default: a backward-compatible change) and an optional `coupon`. Amounts are
integer minor units (cents) so no float ever touches money.

The Kafka key of every order event is its `order_id`, so the consumer's key
ordering keeps one order's events in sequence.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from schemas.envelope import Event, Payload

Currency = Literal["EUR", "USD", "GBP", "CHF", "JPY"]
#: Upper bound for amounts: keeps every integer within 64 bits for the sinks.
MAX_CENTS = 10**15


class LineItem(Payload):
    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(ge=1, le=10_000)
    unit_price_cents: int = Field(ge=0, le=MAX_CENTS)


class OrderCreatedData(Payload):
    key_field: ClassVar[str | None] = "order_id"

    order_id: str = Field(min_length=1, max_length=64)
    customer_id: str = Field(min_length=1, max_length=64)
    items: list[LineItem] = Field(min_length=1, max_length=1_000)
    total_cents: int = Field(ge=0, le=MAX_CENTS)
    currency: Currency


class OrderCreatedV2Data(OrderCreatedData):
    channel: Literal["web", "mobile", "store", "partner"] = "web"
    coupon: str | None = Field(default=None, max_length=64)


class OrderPaidData(Payload):
    key_field: ClassVar[str | None] = "order_id"

    order_id: str = Field(min_length=1, max_length=64)
    payment_id: str = Field(min_length=1, max_length=64)
    amount_cents: int = Field(ge=0, le=MAX_CENTS)
    currency: Currency
    method: Literal["card", "transfer", "wallet"]


class OrderCancelledData(Payload):
    key_field: ClassVar[str | None] = "order_id"

    order_id: str = Field(min_length=1, max_length=64)
    reason: str = Field(min_length=1, max_length=500)
    cancelled_by: Literal["customer", "merchant", "system"]


class OrderCreatedV1(Event):
    type: Literal["order.created"]
    version: Literal[1]
    data: OrderCreatedData


class OrderCreatedV2(Event):
    type: Literal["order.created"]
    version: Literal[2]
    data: OrderCreatedV2Data


class OrderPaidV1(Event):
    type: Literal["order.paid"]
    version: Literal[1]
    data: OrderPaidData


class OrderCancelledV1(Event):
    type: Literal["order.cancelled"]
    version: Literal[1]
    data: OrderCancelledData


#: Every concrete order event model, in registry order.
MODELS: tuple[type[Event], ...] = (OrderCreatedV1, OrderCreatedV2, OrderPaidV1, OrderCancelledV1)
