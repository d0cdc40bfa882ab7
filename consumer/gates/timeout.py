"""Timeout gate: a time limit per handler attempt. A timeout is a
`TransientError`: the retry gate decides whether another attempt follows."""

from __future__ import annotations

import asyncio

from consumer.errors import TransientError
from consumer.gates.context import NextRun, RunContext


class Timeout:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def __call__(self, run: RunContext, call_next: NextRun) -> None:
        try:
            async with asyncio.timeout(self.seconds):
                await call_next(run)
        except TimeoutError as exc:
            raise TransientError(f"handler timed out after {self.seconds:g}s") from exc
