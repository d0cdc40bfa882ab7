from __future__ import annotations

import logging

import orjson

from consumer.observability.logging import JsonFormatter, correlation_id


def _line(msg: str, **extra: object) -> dict[str, object]:
    record = logging.makeLogRecord({"name": "t", "levelname": "INFO", "msg": msg, **extra})
    parsed: dict[str, object] = orjson.loads(JsonFormatter().format(record))
    return parsed


def test_lines_are_json_with_extra_fields_and_the_current_event_id() -> None:
    assert "correlation_id" not in _line("outside")
    token = correlation_id.set("evt-1")
    try:
        line = _line("inside %s", args=("a handler",), topic="orders")
    finally:
        correlation_id.reset(token)
    assert line["msg"] == "inside a handler"
    assert line["topic"] == "orders"
    assert line["correlation_id"] == "evt-1"
    assert line["level"] == "info"
