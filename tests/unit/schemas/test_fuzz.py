"""Property tests: whatever the bytes, `validate` returns an event or raises
`InvalidEvent` — never anything else — and what it accepts round-trips."""

from __future__ import annotations

import json
import random
from typing import Any

import orjson
from hypothesis import example, given
from hypothesis import strategies as st

from schemas import Event, InvalidEvent, validate
from schemas.samples import SAMPLE_TYPES, sample_event
from schemas.validation import MAX_DETAIL_BYTES, Reason

REASONS = {r.value for r in Reason}

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=4),
    max_leaves=20,
)


def check(raw: bytes, *, allow_unknown: bool = False) -> Event | None:
    """The contract, asserted for one input."""
    invalid: InvalidEvent | None
    try:
        event = validate(raw, allow_unknown=allow_unknown)
    except InvalidEvent as exc:
        invalid = exc
    else:
        invalid = None
    if invalid is not None:
        assert invalid.reason in REASONS
        assert len(invalid.detail.encode("utf-8")) <= MAX_DETAIL_BYTES
        return None
    # Anything accepted is a proper event: JSON-able and stable on a round trip.
    assert event.occurred_at.tzinfo is not None
    again = validate(orjson.dumps(event.to_dict()), allow_unknown=allow_unknown)
    assert again == event
    orjson.dumps(event.data_dict())
    return event


def consistent(raw: bytes) -> bool:
    """The contract in strict and lenient mode (asserted by `check`), then
    their relation: allowing unknown types only ever accepts more, and never
    reads a known event differently."""
    strict = check(raw)
    lenient = check(raw, allow_unknown=True)
    return strict is None or lenient == strict


@given(st.binary(max_size=2048))
@example(b"")
@example(b" \t\r\n")
@example(b"NaN")
@example(b"-Infinity")
@example(b"\xed\xa0\x80")  # an encoded surrogate: invalid UTF-8
@example(b"[" * 100_000)
@example(b'{"a":' * 100_000)
@example(b"\x00")
def test_arbitrary_bytes(raw: bytes) -> None:
    assert consistent(raw)


@given(json_values)
def test_arbitrary_json(value: Any) -> None:
    # stdlib json: writes NaN/Infinity literals and integers beyond 64 bits.
    raw = json.dumps(value).encode()
    assert consistent(raw)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated_events(draw: st.DrawFn) -> bytes:
    """A valid sample with one structural mutation at a random place."""
    seed = draw(st.integers(0, 2**32 - 1))
    event = sample_event(type=draw(st.sampled_from(SAMPLE_TYPES)), rng=random.Random(seed))
    path = draw(st.sampled_from(_paths(event)[1:]))
    parent: Any = event
    for part in path[:-1]:
        parent = parent[part]
    action = draw(st.sampled_from(["delete", "replace", "nest", "nan", "huge"]))
    last = path[-1]
    if action == "delete":
        if isinstance(parent, dict):
            del parent[last]
        else:
            parent.pop(last)
    elif action == "replace":
        parent[last] = draw(json_values)
    elif action == "nest":
        parent[last] = [parent[last]]
    elif action == "nan":
        parent[last] = float("nan")
    else:
        parent[last] = 2**64
    return json.dumps(event).encode()


@given(mutated_events())
def test_mutated_valid_events(raw: bytes) -> None:
    assert consistent(raw)


@given(mutated_events(), st.data())
def test_byte_level_mutations(raw: bytes, data: st.DataObject) -> None:
    pos = data.draw(st.integers(0, len(raw) - 1))
    op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
    if op == "flip":
        raw = raw[:pos] + bytes([raw[pos] ^ data.draw(st.integers(1, 255))]) + raw[pos + 1:]
    elif op == "cut":
        raw = raw[:pos]
    else:
        raw = raw[:pos] + data.draw(st.binary(min_size=1, max_size=8)) + raw[pos:]
    assert consistent(raw)


@given(st.integers(min_value=0, max_value=10_000), st.sampled_from([*SAMPLE_TYPES, None]))
def test_samples_are_always_valid(i: int, type_: str | None) -> None:
    event = check(orjson.dumps(sample_event(i, type=type_)))
    assert event is not None
