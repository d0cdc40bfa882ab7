"""The built-in `store` handler: each valid event becomes one row in table
`events` (DESIGN §2). The message is done once that row's batch is written."""

from __future__ import annotations

import inspect
from typing import Any


async def store(event: Any, ctx: Any) -> None:
    """Emit `event` to the configured sink through `ctx.emit`, which turns it
    into a `Row` (`Row.from_event`) with the record's coordinates and hands it
    to the batcher. Never blocks on the write itself: completion is tracked
    by the pipeline."""
    result = ctx.emit(event)
    if inspect.isawaitable(result):
        await result
