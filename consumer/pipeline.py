"""Builds the per-record `Processor` the engine runs: middleware → handler →
batcher → sink, with retry and dead-letter around it.

Provisional: decodes JSON and calls the configured handler; the gates replace
this with the full chain behind the same `build_processor` signature.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import orjson

from consumer.config import Settings
from consumer.types import Done, Handler, Headers, Record


@dataclass(frozen=True, slots=True)
class Context:
    """What a handler learns about its record besides the event."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: Headers


def load_handler(spec: str) -> Handler:
    module, _, name = spec.partition(":")
    handler: Handler = getattr(importlib.import_module(module), name)
    return handler


async def _noop(event: Any, ctx: Context) -> None:
    return None


class HandlerProcessor:
    def __init__(self, handler: Handler) -> None:
        self._handler = handler

    async def process(self, record: Record, done: Done) -> None:
        event = orjson.loads(record.value) if record.value else None
        ctx = Context(record.topic, record.partition, record.offset, record.key, record.headers)
        await self._handler(event, ctx)
        done(record)

    async def flush(self) -> None:
        return None

    async def close(self) -> None:
        return None


def build_processor(settings: Settings, metrics: Any = None) -> HandlerProcessor:
    handler = load_handler(settings.handler) if settings.handler else _noop
    return HandlerProcessor(handler)
