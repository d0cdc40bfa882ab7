"""Event-loop lag: how late a periodic timer fires.

Every coroutine of the service shares one thread; a stretch of synchronous
work delays probes, heartbeats and commits alike. The lag of a timer that
should fire every `interval` seconds measures exactly that delay, and the
histogram `consumer_event_loop_lag_seconds` keeps its distribution.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


class LoopLagMonitor:
    """`start()` starts `_lag_routine`; `close()` stops it (safe twice)."""

    def __init__(self, histogram: Any, interval: float = 0.1) -> None:
        self._histogram = histogram
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._lag_routine(), name="consumer-loop-lag")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _lag_routine(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self._interval
        observe = self._histogram.observe
        while True:
            due = loop.time() + interval
            await asyncio.sleep(interval)
            observe(max(0.0, loop.time() - due))
