"""The Confluent wire format of a record value: one zero byte (the "magic
byte"), the writer's schema id as a 4-byte big-endian integer, then the
payload (Avro binary, JSON, or Protobuf with message indexes). Pure."""

from __future__ import annotations

MAGIC = 0
#: Magic byte + schema id.
PREFIX_BYTES = 5


def schema_id_of(value: object) -> int | None:
    """The schema id of a wire-format value, or None when `value` is not
    bytes that start with the prefix (plain JSON starts with `{` or blank)."""
    if type(value) is not bytes or len(value) < PREFIX_BYTES or value[0] != MAGIC:
        return None
    return int.from_bytes(value[1:PREFIX_BYTES], "big")


def frame(schema_id: int, payload: bytes) -> bytes:
    """`payload` behind the prefix for `schema_id` (what Confluent's
    serializers write). Raises `ValueError` for an id outside 0..2**31-1."""
    if not 0 <= schema_id < 2**31:
        raise ValueError(f"schema id {schema_id} out of range")
    return bytes((MAGIC,)) + schema_id.to_bytes(4, "big") + payload
