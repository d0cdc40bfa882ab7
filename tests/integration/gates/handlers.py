"""Handlers the gate tests run inside `consumer run` (CONSUMER_HANDLER=...).

The event id's prefix tells `by_id` how to behave, so one topic can carry
every case: `transient-` fails its first two attempts, `fatal-` raises a
non-retriable error, `exhaust-` always fails with a retriable one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from consumer.errors import FatalError, TransientError
from consumer.gates.context import RunContext, batch_handler


async def by_id(event: Any, ctx: Any) -> None:
    event_id = str(event.id)
    if event_id.startswith("transient-") and ctx.attempt < 3:
        raise TransientError(f"downstream blip on attempt {ctx.attempt}")
    if event_id.startswith("fatal-"):
        raise FatalError(f"cannot handle {event_id}")
    if event_id.startswith("exhaust-"):
        raise TransientError("still down")


async def broken(event: Any, ctx: Any) -> None:
    """A bad deploy: rejects every event."""
    raise FatalError(f"handler bug: no mapping for {event.type}")


async def call_downstream(event: Any, ctx: Any) -> None:
    """POSTs the event id to GATES_DOWNSTREAM_URL through the rate limiter."""
    import os

    resp = await ctx.http.request("downstream", "POST", os.environ["GATES_DOWNSTREAM_URL"],
                                  json={"id": str(event.id)})
    if not resp.ok:
        raise TransientError(f"downstream answered {resp.status}")


@batch_handler
async def store_unless_fatal(events: Sequence[Any], ctx: RunContext) -> None:
    """A batch handler: stores the run, unless an event in it is `fatal-`."""
    for event in events:
        if str(event.id).startswith("fatal-"):
            raise FatalError(f"cannot handle {event.id}")
    ctx.emit()
