"""Structured logging: one JSON object per line on stderr (or plain text for
people at a terminal). Fields passed with `extra=` become JSON keys.

Every line passes through redaction: the secrets the settings hold (the Kafka
password, a DSN's password) are replaced by `***` wherever they turn up — in
a message, an `extra` field or a traceback — whoever logged them.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

#: The event id of the message being handled, set by the logging middleware,
#: so every line logged while handling it — ours or the handler's — carries it.
correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "correlation_id", default=None)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if "correlation_id" not in entry and (event_id := correlation_id.get()) is not None:
            entry["correlation_id"] = event_id
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class RedactingFormatter(logging.Formatter):
    """Formats with `inner`, then masks each of `secrets` in the whole line."""

    def __init__(self, inner: logging.Formatter, secrets: Iterable[str]) -> None:
        super().__init__()
        self._inner = inner
        # Longest first, so a secret containing another is masked whole.
        # Also as JSON escapes them (a quote or backslash in a password).
        forms = {form for s in secrets if s for form in (s, orjson.dumps(s).decode()[1:-1])}
        self._secrets = sorted(forms, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        line = self._inner.format(record)
        for secret in self._secrets:
            line = line.replace(secret, "***")
        return line


def setup_logging(level: str = "INFO", fmt: str = "json", *, secrets: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler(sys.stderr)
    inner = JsonFormatter() if fmt == "json" else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s")
    handler.setFormatter(RedactingFormatter(inner, secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka logs every reconnect attempt at ERROR; keep its noise down.
    logging.getLogger("aiokafka").setLevel(max(root.level, logging.WARNING))
