"""From raw bytes to a valid event or one `InvalidEvent` with a machine reason.

Contract: `validate` returns an `Event` or raises `InvalidEvent`; nothing else
escapes, whatever the bytes (empty, whitespace, invalid UTF-8, NaN, arrays,
scalars, deep nesting, huge payloads). The valid path is a length check and one
`TypeAdapter.validate_json` call; all classification work happens only on
failure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any, final

import orjson
from pydantic import ValidationError

from schemas.envelope import Event
from schemas.errors import SchemaError
from schemas.registry import Registry

#: Records above this size are refused before parsing (Kafka's default
#: `max.message.bytes` is 1 MiB, so a valid producer rarely comes close).
MAX_EVENT_BYTES = 1024 * 1024
#: Dead-letter headers carry `detail`; keep them small.
MAX_DETAIL_BYTES = 1024


class Reason(StrEnum):
    """Why a record is not an event. Bounded: safe as a metric label."""

    EMPTY = "empty"
    TOO_LARGE = "too_large"
    INVALID_JSON = "invalid_json"
    TOO_DEEP = "too_deep"
    NOT_AN_OBJECT = "not_an_object"
    UNKNOWN_TYPE = "unknown_type"
    UNKNOWN_VERSION = "unknown_version"
    SCHEMA_VIOLATION = "schema_violation"
    UNREADABLE = "unreadable"  # not bytes at all, or a failure we did not foresee
    UNDECODABLE = "undecodable"  # the Kafka client, or the value's format, could not decode it
    UNKNOWN_SCHEMA = "unknown_schema"  # the schema registry does not know the value's schema id


def truncate(text: str, limit: int = MAX_DETAIL_BYTES) -> str:
    """At most `limit` UTF-8 bytes, never a split character, always encodable."""
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return data.decode("utf-8")
    return data[: limit - 3].decode("utf-8", "ignore") + "..."


@final  # run validation tells invalid results apart by exact type (`consumer.gates.validation`)
class InvalidEvent(SchemaError):
    """The record is not a valid event. Never retriable: the bytes won't change.

    `reason` is a `Reason` value (a short machine word); `detail` is human text
    (pydantic's messages, no input values), at most ~1 KiB of UTF-8, safe for a
    Kafka header. `schema_id` is the registry schema id of a wire-format
    value (None for plain JSON): the dead letter carries it in a header.
    """

    retriable = False

    def __init__(self, reason: str, detail: str = "", *, schema_id: int | None = None) -> None:
        self.reason = str(reason)
        self.detail = truncate(detail)
        self.schema_id = schema_id
        super().__init__(f"{self.reason}: {self.detail}" if self.detail else self.reason)


def _strip_tags(loc: tuple[Any, ...], registry: Registry) -> tuple[str, tuple[Any, ...]]:
    """Drop the union tags pydantic puts first in `loc`; return them as a prefix."""
    if not loc or loc[0] not in registry.type_names:
        return "", loc
    if loc[0] in registry.single_version or len(loc) < 2:
        return f"{loc[0]}", loc[1:]
    return f"{loc[0]} v{loc[1]}", loc[2:]


def _describe(errors: list[Any], registry: Registry, limit: int = 10) -> str:
    parts = []
    prefix = ""
    for err in errors[:limit]:
        prefix, rest = _strip_tags(tuple(err["loc"]), registry)
        loc = ".".join(str(p) for p in rest)
        parts.append(f"{loc}: {err['msg']}" if loc else str(err["msg"]))
    if len(errors) > limit:
        parts.append(f"(+{len(errors) - limit} more)")
    text = "; ".join(parts)
    return f"{prefix}: {text}" if prefix else text


def _classify(  # noqa: PLR0911 - a decision table reads best as early returns
    exc: ValidationError, raw: bytes, registry: Registry
) -> tuple[Reason, str]:
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    if not errors:
        return Reason.SCHEMA_VIOLATION, str(exc)
    first = errors[0]
    kind, loc, msg = first["type"], tuple(first["loc"]), str(first["msg"])
    if kind == "json_invalid":
        if not raw.strip():
            return Reason.EMPTY, "the record value is blank"
        if "recursion limit" in msg:
            return Reason.TOO_DEEP, msg
        return Reason.INVALID_JSON, msg
    if not loc and kind in ("dict_type", "model_type", "model_attributes_type"):
        return Reason.NOT_AN_OBJECT, "the event must be a JSON object"
    if kind == "union_tag_not_found":  # the discriminator field itself is missing
        prefix = f"{loc[0]}: " if loc else ""
        return Reason.SCHEMA_VIOLATION, f"{prefix}{'version' if loc else 'type'}: Field required"
    if kind == "union_tag_invalid":
        if not loc:
            return Reason.UNKNOWN_TYPE, msg
        return Reason.UNKNOWN_VERSION, f"{loc[0]}: {msg}"
    for err in errors:
        # A type with one version has no inner union: a wrong version shows up
        # as a Literal mismatch, possibly after other errors (e.g. a missing id).
        eloc = tuple(err["loc"])
        if (
            err["type"] == "literal_error"
            and len(eloc) == 2
            and eloc[1] == "version"
            and eloc[0] in registry.single_version
        ):
            return Reason.UNKNOWN_VERSION, f"{eloc[0]}: {err['msg']}"
    return Reason.SCHEMA_VIOLATION, _describe(errors, registry)


def _generic_or_refuse(registry: Registry, refused: ValidationError, raw: bytes,
                       allow_unknown: bool, generic: Callable[[], Event]) -> Event:
    """After the models refused a value (`raw`: its bytes, for the
    `invalid_json` check; `b"-"` for a decoded document): an unknown type or
    version passes as a `GenericEvent` (`generic()` validates the value as
    one) when allowed; otherwise the classified `InvalidEvent` is raised."""
    reason, detail = _classify(refused, raw, registry)
    if allow_unknown and reason in (Reason.UNKNOWN_TYPE, Reason.UNKNOWN_VERSION):
        try:
            return generic()
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_input=False, include_context=False)
            raise InvalidEvent(Reason.SCHEMA_VIOLATION, _describe(errors, registry)) from None
    raise InvalidEvent(reason, detail)


def validate_with(
    registry: Registry,
    raw: bytes | bytearray | memoryview | str | None,
    *,
    allow_unknown: bool = False,
    max_bytes: int = MAX_EVENT_BYTES,
) -> Event:
    """Validate `raw` against `registry`; see the module contract."""
    if type(raw) is not bytes:
        raw = _as_bytes(raw)
    if not raw:
        raise InvalidEvent(Reason.EMPTY, "the record has no value")
    if len(raw) > max_bytes:
        raise InvalidEvent(Reason.TOO_LARGE, f"{len(raw)} bytes > limit {max_bytes}")
    try:
        return registry.adapter.validate_json(raw)
    except ValidationError as exc:
        refused = exc
    except Exception as exc:  # backstop for the contract: only InvalidEvent escapes
        raise InvalidEvent(Reason.UNREADABLE, f"{type(exc).__name__}: {exc}") from exc
    return _generic_or_refuse(registry, refused, raw, allow_unknown,
                              lambda: registry.generic.validate_json(raw))


def validate_many_with(
    registry: Registry,
    raws: Sequence[bytes | None],
    *,
    allow_unknown: bool = False,
    max_bytes: int = MAX_EVENT_BYTES,
) -> list[Event | InvalidEvent]:
    """`validate_with` over a run of record values, in one tight loop: one
    result per value, in order — the event, or the `InvalidEvent` that
    `validate_with` would have raised for it. Never raises.

    (One `validate_json` per value measured as fast as one call over the
    concatenated run, and needs no re-parse when one value is not JSON.)
    """
    # pydantic-core's validator itself: the TypeAdapter wrapper costs a few
    # hundred nanoseconds per call, which adds up over a run.
    check = registry.adapter.validator.validate_json
    out: list[Event | InvalidEvent] = []
    append = out.append
    for raw in raws:
        if type(raw) is bytes and 0 < len(raw) <= max_bytes:
            try:
                append(check(raw))
            except Exception:  # noqa: BLE001 - classified (or accepted) just below
                pass
            else:
                continue
        try:
            append(validate_with(registry, raw, allow_unknown=allow_unknown,
                                 max_bytes=max_bytes))
        except InvalidEvent as exc:
            append(exc)
    return out


def validate_decoded_with(
    registry: Registry, doc: Any, *, allow_unknown: bool = False
) -> Event:
    """Validate a document a binary format decoded (Avro: dicts, lists,
    strings, ints, `datetime`s for timestamp logical types) with the same
    models, in Python mode: strict as for JSON, except that a datetime field
    takes a `datetime` (Python mode's strict form) instead of a string. Same
    contract: `Event` or `InvalidEvent` (reasons as for JSON, never
    `invalid_json`)."""
    try:
        return registry.adapter.validate_python(doc)
    except ValidationError as exc:
        refused = exc
    except Exception as exc:  # backstop for the contract: only InvalidEvent escapes
        raise InvalidEvent(Reason.UNREADABLE, f"{type(exc).__name__}: {exc}") from exc
    return _generic_or_refuse(registry, refused, b"-", allow_unknown,
                              lambda: registry.generic.validate_python(doc))


def validate_dict_with(
    registry: Registry, doc: Any, *, allow_unknown: bool = False
) -> Event:
    """Validate an already-decoded JSON document (e.g. a sample dict) exactly
    as its bytes would be. Same contract: `Event` or `InvalidEvent`."""
    try:
        raw = orjson.dumps(doc)
    except TypeError as exc:  # not JSON-able: sets, objects, huge ints
        raise InvalidEvent(Reason.UNREADABLE, f"not JSON-able: {exc}") from None
    return validate_with(registry, raw, allow_unknown=allow_unknown)


def _as_bytes(raw: object) -> bytes:
    """The slow path for callers that hand over something other than `bytes`."""
    if raw is None:
        raise InvalidEvent(Reason.EMPTY, "the record has no value")
    if isinstance(raw, bytes | bytearray | memoryview):
        return bytes(raw)
    if isinstance(raw, str):  # a convenience for tests and tools; Kafka gives bytes
        try:
            return raw.encode("utf-8")
        except UnicodeEncodeError as exc:  # lone surrogates
            raise InvalidEvent(Reason.INVALID_JSON, f"not encodable as UTF-8: {exc}") from None
    raise InvalidEvent(Reason.UNREADABLE, f"expected bytes, got {type(raw).__name__}")
