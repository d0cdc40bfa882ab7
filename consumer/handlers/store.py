"""The built-in `store` handler: each valid event becomes one row in table
`events` (DESIGN §2). The message is done once that row's batch is written.

`store_batch` (the default) does it for a whole run: one `Row` per event,
built in one step, submitted as one unit; `store` is the per-event form."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from consumer.gates.context import RunContext, batch_handler


async def store(event: Any, ctx: Any) -> None:
    """Emit `event` to the configured sink through `ctx.emit`, which turns it
    into a `Row` (`Row.from_event`) with the record's coordinates and hands it
    to the batcher. Never blocks on the write itself: completion is tracked
    by the pipeline."""
    result = ctx.emit(event)
    if inspect.isawaitable(result):
        await result


@batch_handler
async def store_batch(events: Sequence[Any], ctx: RunContext) -> None:
    """`store` for a run: every event of the run to the sink as one unit."""
    ctx.emit()
