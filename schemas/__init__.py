"""Event schemas: versioned pydantic models, validation from bytes, samples.

Public API (other gates code against these names):

* `validate(raw, *, allow_unknown=False) -> Event` — bytes to event. Raises only
  `InvalidEvent` (a `SchemaError`: never retriable), whose `reason` is a short
  machine word (see `Reason`: `empty`, `too_large`, `invalid_json`, `too_deep`,
  `not_an_object`, `unknown_type`, `unknown_version`, `schema_violation`,
  `unreadable`) and whose `detail` is human text truncated to ~1 KiB, safe
  for a dead-letter header.
  With `allow_unknown=True` (setting `CONSUMER_ALLOW_UNKNOWN_TYPES`) an unknown
  (type, version) comes back as a `GenericEvent` whose `data` is a dict.
* `Event` — the envelope: `.id .type .version .occurred_at` (tz-aware datetime)
  `.data` (a pydantic model, or a dict for `GenericEvent`) `.source`.
  `event.data_dict()` gives `data` as a JSON-able dict; `event.to_dict()` the
  whole envelope; `event.key()` the domain key (the order id) or the id.
  Events are frozen; unknown extra fields are ignored (tolerant reader).
* `validate_many(raws)` — `validate` over a run of values in one pass: a list
  with, per value, the event or its `InvalidEvent` (returned, not raised).
* `validate_dict(doc)` — the same for an already-decoded JSON document. The
  models are strict (the JSON contract): `Model.model_validate(dict)` refuses
  datetime strings, so go through `validate_dict` (or pass `strict=False`).
* `REGISTRY` — the shipped models keyed by (type, version); `Registry(models)`
  builds another one, `validate_with(registry, raw, ...)` validates against it.
* `schemas.samples` — `sample_event`, `sample_bytes`, `invalid_samples` for the
  produce command, demos and tests.
* `schemas.export` / `schemas.compat` — JSON Schema export and the
  backward-compatibility check behind `consumer schemas export|check`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from schemas.envelope import Event, GenericEvent, Payload
from schemas.errors import SchemaError
from schemas.orders import MODELS
from schemas.registry import EventKey, Registry
from schemas.validation import (
    MAX_EVENT_BYTES,
    InvalidEvent,
    Reason,
    validate_decoded_with,
    validate_dict_with,
    validate_many_with,
    validate_with,
)

#: The shipped domain (orders).
REGISTRY = Registry(MODELS)


def validate(
    raw: bytes | bytearray | memoryview | str | None,
    *,
    allow_unknown: bool = False,
    max_bytes: int = MAX_EVENT_BYTES,
) -> Event:
    """Validate one record value against the shipped registry.

    Returns the concrete event model for its (type, version), or a
    `GenericEvent` when `allow_unknown` and the pair is unknown. Raises
    `InvalidEvent` and nothing else. Pure CPU, no I/O, safe from any thread.
    """
    return validate_with(REGISTRY, raw, allow_unknown=allow_unknown, max_bytes=max_bytes)


def validate_many(
    raws: Sequence[bytes | None], *, allow_unknown: bool = False,
    max_bytes: int = MAX_EVENT_BYTES,
) -> list[Event | InvalidEvent]:
    """`validate` over a run of values in one pass: per value, the event or
    the `InvalidEvent` `validate` would raise. Never raises."""
    return validate_many_with(REGISTRY, raws, allow_unknown=allow_unknown, max_bytes=max_bytes)


def validate_dict(doc: Any, *, allow_unknown: bool = False) -> Event:
    """`validate` for a decoded JSON document (e.g. `samples.sample_event()`)."""
    return validate_dict_with(REGISTRY, doc, allow_unknown=allow_unknown)


__all__ = [
    "MAX_EVENT_BYTES",
    "REGISTRY",
    "Event",
    "EventKey",
    "GenericEvent",
    "InvalidEvent",
    "Payload",
    "Reason",
    "Registry",
    "SchemaError",
    "validate",
    "validate_decoded_with",
    "validate_dict",
    "validate_dict_with",
    "validate_many",
    "validate_many_with",
    "validate_with",
]
