"""Handlers the observability tests run inside `consumer run`.

`live`: a workload that touches every gate — ids starting `transient-` fail
their first attempt (retried), every event calls the downstream at
LIVE_DOWNSTREAM_URL through the rate limiter (which answers 429 now and then),
then is stored. `block`: ids starting `block-` never finish (a stuck handler).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from consumer.errors import TransientError


async def live(event: Any, ctx: Any) -> None:
    if str(event.id).startswith("transient-") and ctx.attempt < 2:
        raise TransientError("downstream blip")
    resp = await ctx.http.request("downstream", "POST", os.environ["LIVE_DOWNSTREAM_URL"],
                                  json={"id": str(event.id)})
    if not resp.ok:
        raise TransientError(f"downstream answered {resp.status}")
    ctx.emit(event)


async def block(event: Any, ctx: Any) -> None:
    if str(event.id).startswith("block-"):
        await asyncio.Event().wait()
