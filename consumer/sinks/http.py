"""HTTP sink (`http://…`, `https://…`): each batch is one POST of a JSON array
of event envelopes (with their Kafka coordinates under `_kafka`).

At-least-once like the Kafka sink: a batch whose answer was lost is posted
again; the receiver dedupes on the event `id`. The answer's status alone
classifies it (the body is read bounded, decoded with replacement, and only
quoted in the error):

- 2xx: written.
- 400, 413, 415, 422 (`REFUSED_STATUS`): the receiver refuses the *payload*
  — the same bytes get the same answer — so the error is not retriable and
  the batcher bisects the batch down to the rows it refuses.
- anything else — a redirect (3xx: never followed: a client would re-send it
  as a GET without the body, and a 2xx to that would count the batch as
  written), 401/403/407 (credentials), 404/405/410 (routing), 408/425/429,
  5xx, any other status, a connection failure or a timeout: the sink, not
  the rows. Retriable: the batcher retries with its backoff, nothing is
  dead-lettered or committed, and `healthy()` is False (`unhealthy_reason`
  says why) until a write succeeds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aiohttp
import orjson

from consumer.errors import SinkError
from consumer.masking import mask_url
from consumer.sinks.base import Row

#: Answers that refuse the payload itself; every other non-2xx is retriable.
REFUSED_STATUS = frozenset({400, 413, 415, 422})
#: At most this much of an error answer's body is read (and 200 chars quoted).
MAX_BODY_BYTES = 4096
_QUOTED_CHARS = 200


def encode(rows: Sequence[Row]) -> bytes:
    return orjson.dumps([
        {**row.envelope(), "_kafka": {"topic": row.topic, "partition": row.partition,
                                      "offset": row.offset}}
        for row in rows
    ])


class HttpSink:
    """One `aiohttp.ClientSession` for the sink's life; `healthy()` is False
    while the last write failed as retriable (`unhealthy_reason` says why)."""

    name = "http"
    max_writes = 1  # rows in submission order

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.url = url
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        #: Why the last write failed as retriable; None once one succeeds.
        self.unhealthy_reason: str | None = None

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
            # Never follow a redirect: it would re-send the batch as a GET
            # without its body.
            async with self._session.post(self.url, data=encode(rows),
                                          allow_redirects=False) as resp:
                status = resp.status
                location = resp.headers.get("Location", "")
                body = await _read_body(resp) if not 200 <= status < 300 else ""
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self.unhealthy_reason = f"http sink: {exc!r}"
            raise SinkError(f"http sink: {exc!r}", retriable=True) from exc
        if 200 <= status < 300:
            self.unhealthy_reason = None
            return
        if status in REFUSED_STATUS:
            raise SinkError(f"http sink: {status} refused the payload: {body}", retriable=False)
        what = (f"redirect to {mask_url(location)!r} (not followed)" if 300 <= status < 400
                else body)
        message = f"http sink: {status} {what}"
        self.unhealthy_reason = message
        raise SinkError(message, retriable=True)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
            # Let aiohttp's connector finish closing its transports.
            await asyncio.sleep(0)

    async def healthy(self) -> bool:
        return self._session is not None and self.unhealthy_reason is None


async def _read_body(resp: aiohttp.ClientResponse) -> str:
    """At most `MAX_BODY_BYTES` of the answer, as text (invalid UTF-8
    replaced), cut to 200 characters; "" if it cannot be read. Never raises:
    the status alone classifies the answer."""
    try:
        raw = await resp.content.read(MAX_BODY_BYTES)
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
        return ""
    return raw.decode("utf-8", "replace")[:_QUOTED_CHARS]
