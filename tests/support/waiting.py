"""Waiting in tests for plain state to change."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Return once `predicate()` holds; `TimeoutError` after `within` s."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - polling plain state, no event to wait on
            await asyncio.sleep(0.001)
