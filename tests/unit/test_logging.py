from __future__ import annotations

import logging
import sys

import orjson

from consumer.observability.logging import JsonFormatter, RedactingFormatter, correlation_id


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


def test_secrets_are_masked_in_every_line_whoever_logs_them() -> None:
    secret = 'pa"ss\\word'
    formatter = RedactingFormatter(JsonFormatter(), [secret, "", "dsnpw"])
    try:
        raise ValueError(f"connect failed with {secret}")  # noqa: TRY301 - to get exc_info
    except ValueError:
        record = logging.makeLogRecord({
            "name": "t", "levelname": "ERROR", "msg": "dsn %s", "args": ("pg://u:dsnpw@h",),
            "exc_info": sys.exc_info(), "password": secret})
    line = formatter.format(record)
    parsed = orjson.loads(line)
    assert parsed["msg"] == "dsn pg://u:***@h"
    assert parsed["password"] == "***"
    assert "connect failed with ***" in parsed["exc"]
    assert "dsnpw" not in line
    assert secret not in line
    assert orjson.dumps(secret).decode()[1:-1] not in line  # nor as JSON escapes it
