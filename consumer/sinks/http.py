"""HTTP sink (`http://…`, `https://…`): each batch is one POST of a JSON array
of event envelopes (with their Kafka coordinates under `_kafka`).

At-least-once like the Kafka sink: a batch whose answer was lost is posted
again; the receiver dedupes on the event `id`. Status codes classify errors:
2xx written; 408, 425, 429 and 5xx (and connection failures, timeouts) are
retriable; any other 4xx says the payload is refused — the batcher bisects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aiohttp
import orjson

from consumer.errors import SinkError
from consumer.sinks.base import Row

_RETRIABLE_STATUS = frozenset({408, 425, 429})


def encode(rows: Sequence[Row]) -> bytes:
    return orjson.dumps([
        {**row.envelope(), "_kafka": {"topic": row.topic, "partition": row.partition,
                                      "offset": row.offset}}
        for row in rows
    ])


class HttpSink:
    """One `aiohttp.ClientSession` for the sink's life; `healthy()` is True
    while the last write did not fail as retriable."""

    name = "http"

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.url = url
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._ok = True

    async def open(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                headers={"Content-Type": "application/json"})

    async def write(self, rows: Sequence[Row]) -> None:
        if not rows:
            return
        if self._session is None:
            raise SinkError("http sink is not open", retriable=True)
        try:
            async with self._session.post(self.url, data=encode(rows)) as resp:
                status = resp.status
                body = (await resp.text())[:200] if status >= 300 else ""
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self._ok = False
            raise SinkError(f"http sink: {exc!r}", retriable=True) from exc
        if 200 <= status < 300:
            self._ok = True
            return
        retriable = status in _RETRIABLE_STATUS or status >= 500
        self._ok = not retriable
        raise SinkError(f"http sink: {status} {body}", retriable=retriable)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
            # Let aiohttp's connector finish closing its transports.
            await asyncio.sleep(0)

    async def healthy(self) -> bool:
        return self._session is not None and self._ok
