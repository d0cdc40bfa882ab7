"""The wire prefix and the schema cache: pure pieces, property-tested."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumer.formats.cache import SchemaCache
from consumer.formats.wire import frame, schema_id_of


@given(st.integers(0, 2**31 - 1), st.binary(max_size=64))
def test_a_framed_payload_names_its_schema_id(schema_id: int, payload: bytes) -> None:
    value = frame(schema_id, payload)
    assert schema_id_of(value) == schema_id
    assert value[5:] == payload


def test_plain_json_and_short_values_have_no_schema_id() -> None:
    assert schema_id_of(b'{"id": "1"}') is None
    assert schema_id_of(b"\x00\x00\x01") is None
    assert schema_id_of(None) is None


@given(st.lists(st.integers(0, 20), max_size=200), st.integers(1, 8))
def test_the_cache_holds_the_most_recently_used_schemas_only(ids: list[int],
                                                              capacity: int) -> None:
    cache: SchemaCache[str] = SchemaCache(capacity, unknown_ttl=30.0)
    for sid in ids:
        if cache.get(sid) is None:
            cache.put(sid, f"schema {sid}")
    assert len(cache) <= capacity
    recent = list(dict.fromkeys(reversed(ids)))[:capacity]
    assert all(cache.get(sid) == f"schema {sid}" for sid in recent)


def test_an_unknown_id_is_asked_again_only_after_its_while() -> None:
    cache: SchemaCache[str] = SchemaCache(4, unknown_ttl=30.0)
    assert cache.needs_fetch(7, now=0.0)
    cache.put_unknown(7, now=0.0)
    assert cache.is_unknown(7)
    assert not cache.needs_fetch(7, now=29.9)
    assert cache.needs_fetch(7, now=30.0)
    cache.put(7, "registered late")  # the registry knows it now
    assert not cache.is_unknown(7)
    assert cache.get(7) == "registered late"
    assert not cache.needs_fetch(7, now=99.0)
