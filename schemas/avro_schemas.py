"""The shipped Avro schemas of the sample events (`schemas/avro/*.avsc`, one
per (type, version)), for producers that write Avro through a Schema
Registry. A unit test holds them to the models: every sample encodes with
its schema and decodes back to the same event.

How an Avro record maps to the envelope (the consumer reads any writer
schema this way, not only these): field names are the envelope's and the
model's; `type` a string and `version` an int, carried in every record
(their defaults say which event a schema is for); `occurred_at` a long with
logical type `timestamp-millis` (or `-micros`), read as a UTC datetime;
optional fields a union with null (default null); amounts integer cents
(long). See docs/FORMATS.md for the full rules.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas.envelope import Event

#: Where the shipped Avro schemas live (package data).
AVRO_DIR = Path(__file__).parent / "avro"


def avro_schema(type_: str, version: int) -> dict[str, Any]:
    """The shipped Avro schema of (type, version). Raises `KeyError` if none."""
    path = AVRO_DIR / f"{type_}.v{version}.avsc"
    if not path.is_file():
        raise KeyError((type_, version))
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return schema


def avro_record(event: Event) -> dict[str, Any]:
    """`event` as the Python record an Avro writer takes (datetimes kept as
    datetimes for the timestamp logical type)."""
    return event.model_dump()
