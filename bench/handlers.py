"""Handlers for the benchmarks (`CONSUMER_HANDLER=bench.handlers:<name>`)."""

from __future__ import annotations

import asyncio
from typing import Any


async def wait_5ms(event: Any, ctx: Any) -> None:
    """A per-event handler whose work is 5 ms of awaited I/O (a downstream
    call), emitting nothing."""
    await asyncio.sleep(0.005)
