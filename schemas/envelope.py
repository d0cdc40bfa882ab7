"""The event envelope every record carries (DESIGN §2), and its generic form.

Model choices, on purpose:

* `frozen=True`: an event is a value; handlers share it across middleware and
  sinks, so nobody may change it in place. Frozen costs nothing at validation.
* `strict=True`: the contract says `version` is an int and amounts are ints;
  lax coercion would accept `"1"` or `true` and hide a broken producer. JSON
  strings still validate as datetimes in strict JSON mode.
* `extra="ignore"` on the envelope *and* on the data models (the tolerant
  reader): a producer that adds a field ahead of the consumer's schema must not
  send its events to the dead-letter topic. The unknown fields are dropped from
  the validated event; the original bytes stay in Kafka (and in the DLQ record
  when something else fails), so nothing is lost for good.
* `allow_inf_nan=False`: NaN/Infinity are not JSON and no sink can store them.

Known leniency: pydantic-core matches the `version` Literal by value, so JSON
`1.0` or `true` reads as version 1 (a validator cannot sit on a discriminator
field). Both name the same version, so no event is misread.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

#: Shared by every envelope and data model; see the module docstring.
MODEL_CONFIG = ConfigDict(frozen=True, strict=True, extra="ignore", allow_inf_nan=False)


class Payload(BaseModel):
    """Base of the typed `data` models of the shipped domains."""

    model_config = MODEL_CONFIG

    #: Name of the field whose value is the Kafka key (keeps per-entity order).
    key_field: ClassVar[str | None] = None


class Event(BaseModel):
    """The envelope. Concrete subclasses pin `type`/`version` and type `data`.

    Every event exposes `id`, `type`, `version`, `occurred_at` (tz-aware),
    `data` (a `Payload` model, or a plain dict for `GenericEvent`) and `source`.
    """

    model_config = MODEL_CONFIG

    id: str = Field(min_length=1, max_length=256)
    type: str = Field(min_length=1, max_length=256)
    version: int = Field(ge=1, le=2**31 - 1)  # fits a 32-bit column
    occurred_at: AwareDatetime
    data: Any
    source: str | None = Field(default=None, max_length=256)

    def data_dict(self) -> dict[str, Any]:
        """`data` as a JSON-able dict (datetimes as strings). Never raises."""
        data = self.data
        if isinstance(data, BaseModel):
            return data.model_dump(mode="json")
        return dict(data)

    def to_dict(self) -> dict[str, Any]:
        """The whole envelope as a JSON-able dict (what a producer would send)."""
        return self.model_dump(mode="json")

    def key(self) -> str:
        """The domain key (e.g. the order id) or, without one, the event id."""
        data = self.data
        if isinstance(data, Payload) and data.key_field is not None:
            return str(getattr(data, data.key_field))
        return self.id


#: Integers every sink can carry (signed 64-bit: PostgreSQL bigint, orjson).
INT_MIN, INT_MAX = -(2**63), 2**63 - 1


def _portable(value: Any, depth: int = 0) -> bool:
    """No NaN/Infinity and no integer beyond 64 bits anywhere in `value`."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, int):
        return INT_MIN <= value <= INT_MAX
    if depth > 256:  # the JSON parser stops at 200 levels; this is a backstop
        return False
    if isinstance(value, dict):
        return all(_portable(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return all(_portable(v, depth + 1) for v in value)
    return True


class GenericEvent(Event):
    """An event of a type/version the registry does not know, passed through
    only when `allow_unknown` is set (setting `allow_unknown_types`). `data` is
    the raw JSON object."""

    data: dict[str, Any]

    @field_validator("data")
    @classmethod
    def _portable_numbers(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Typed payloads bound their numbers in the schema; free-form data
        # needs a walk, or one NaN or 2**70 would break every sink downstream.
        if not _portable(value):
            raise ValueError("NaN, Infinity and integers beyond 64 bits are not accepted")
        return value
