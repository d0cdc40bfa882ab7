"""The I/O of `consumer top`: read /metrics, /healthz and /readyz of each
instance with aiohttp, every request bounded by a timeout. Nothing raises for
an instance that does not answer: it comes back as an error to show."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from consumer.observability.http import HEALTH_PATH, METRICS_PATH, READY_PATH
from consumer.top.model import Probe, Scrape, parse

#: A probe body longer than this is cut (the view shows one line of it).
MAX_BODY = 2_000


@dataclass(frozen=True, slots=True)
class Poll:
    """One instance read once: `scrape` None with `error` when /metrics failed."""

    url: str
    health: Probe
    ready: Probe
    scrape: Scrape | None
    error: str | None


def base_url(target: str) -> str:
    """`host:port`, `http://host:port` or the /metrics URL itself -> `http://host:port`."""
    url = target.strip().rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    return url.removesuffix(METRICS_PATH)


def describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"unreachable ({exc.os_error.strerror or exc.os_error})"
    return f"{type(exc).__name__}: {exc}"


class Poller:
    """Reads instances over one aiohttp session; `timeout` bounds each
    request. `async with` opens and closes the session."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Poller:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def poll_all(self, targets: Sequence[str]) -> list[Poll]:
        """Every instance at once, in the order given."""
        return list(await asyncio.gather(*(self.poll(t) for t in targets)))

    async def poll(self, target: str) -> Poll:
        """Read one instance: /metrics and both probes at once."""
        url = base_url(target)
        async with asyncio.TaskGroup() as group:
            health = group.create_task(self._probe(url + HEALTH_PATH))
            ready = group.create_task(self._probe(url + READY_PATH))
            scrape, error = await self._scrape(url + METRICS_PATH)
        return Poll(url, health.result(), ready.result(), scrape, error)

    async def _get(self, url: str) -> tuple[int, str]:
        assert self._session is not None, "use Poller in `async with`"
        async with self._session.get(url, allow_redirects=False) as resp:
            return resp.status, (await resp.text(errors="replace"))

    async def _probe(self, url: str) -> Probe:
        try:
            status, body = await self._get(url)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return Probe(None, error=describe(exc, self.timeout))
        return Probe(status, body.strip()[:MAX_BODY])

    async def _scrape(self, url: str) -> tuple[Scrape | None, str | None]:
        try:
            status, text = await self._get(url)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return None, describe(exc, self.timeout)
        if status != 200:
            return None, f"/metrics answered HTTP {status}"
        try:
            return parse(text, time.monotonic(), time.time()), None
        except ValueError as exc:
            return None, f"/metrics is not Prometheus text: {exc}"
