"""`ctx.http`: downstream HTTP calls through the rate limiter, on one shared
aiohttp session."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import orjson

from consumer.errors import TransientError
from consumer.gates.ratelimit import Limiters

#: A hostile or broken Retry-After must not park a downstream for days.
MAX_RETRY_AFTER = 300.0
THROTTLE_STATUSES = frozenset({429, 503})


class ThrottledError(TransientError):
    """The downstream answered 429/503; the limiter already slowed down."""

    def __init__(self, message: str, *, status: int, retry_after: float | None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Retry-After as seconds from `now` (wall clock, epoch seconds): either
    delta-seconds or an HTTP date. None when absent or unreadable. Pure."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now
    if math.isnan(seconds):
        return None
    return min(MAX_RETRY_AFTER, max(0.0, seconds))


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes = field(repr=False)

    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class HttpClient:
    """`await request(downstream, method, url, **aiohttp_kwargs)`: waits for a
    slot of `downstream`'s limiter, sends, reads the body.

    Raises `ThrottledError` (retriable) on 429/503 after holding the limiter
    for the Retry-After; `TransientError` on connection errors and timeouts.
    Other statuses are returned: the handler decides what they mean.
    """

    def __init__(self, limiters: Limiters, *, timeout: float = 30.0) -> None:
        self.limiters = limiters
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        # Created on first use: aiohttp binds the session to the running loop.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def request(self, downstream: str, method: str, url: str,
                      **kwargs: Any) -> HttpResponse:
        limiter = self.limiters.get(downstream)
        await limiter.acquire()
        try:
            async with self._get_session().request(method, url, **kwargs) as resp:
                body = await resp.read()
                status, headers = resp.status, dict(resp.headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientError(f"{downstream}: {type(exc).__name__}: {exc}") from exc
        if status in THROTTLE_STATUSES:
            retry_after = parse_retry_after(headers.get("Retry-After"), time.time())
            limiter.throttled(retry_after, status)
            raise ThrottledError(f"{downstream} answered {status} (retry after {retry_after}s)",
                                 status=status, retry_after=retry_after)
        return HttpResponse(status, headers, body)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
