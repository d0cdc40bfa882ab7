"""The chaos run's handler, run inside each `consumer run` member.

Per invocation it appends one line to the member's ledger file
(`CHAOS_LEDGER`): `<event id> <attempt> <monotonic ns> <partition> <offset>` —
the count of
handler invocations per id that the accounting step reads. Then it makes one
awaited call to the downstream (`CHAOS_DOWNSTREAM_URL`) through the rate
limiter, so work is in flight when faults land, and stores the event with
`ctx.emit` (the PostgreSQL sink's idempotent upsert).

The line is written before the call with one `write` on a line-buffered
file opened for appending: a SIGKILL loses no line whose handling began.
"""

from __future__ import annotations

import os
import time
from typing import IO, Any

from consumer.errors import TransientError

_ledger: IO[str] | None = None


def _line(text: str) -> None:
    global _ledger  # noqa: PLW0603 - one file per member process
    if _ledger is None:
        _ledger = open(os.environ["CHAOS_LEDGER"], "a", buffering=1)  # noqa: SIM115
    _ledger.write(text)


async def handle(event: Any, ctx: Any) -> None:
    _line(f"{event.id} {ctx.attempt} {time.monotonic_ns()} {ctx.partition} {ctx.offset}\n")
    resp = await ctx.http.request("downstream", "POST", os.environ["CHAOS_DOWNSTREAM_URL"],
                                  data=event.id.encode())
    if resp.status >= 500:
        raise TransientError(f"downstream answered {resp.status}")
    ctx.emit(event)
