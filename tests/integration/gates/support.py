"""Helpers for the gate tests."""

from __future__ import annotations

from typing import Any


def headers_of(record: Any) -> dict[str, str]:
    """A dead-letter record's headers, names and values decoded."""
    return {k: bytes(v).decode() for k, v in record.headers}
