"""Handlers the engine tests run inside `consumer run`.

Each appends one line per handled record to the file named by
`TEST_HANDLED_FILE`: `partition offset key monotonic_ns`. Lines are shorter
than PIPE_BUF and the file is opened for appending, so several service
processes may share it.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any


def _write(ctx: Any) -> None:
    # Opened per line: a handler also runs inside the test process, where a
    # handle kept open would outlive the test.
    key = ctx.key.decode() if ctx.key else "-"
    with open(os.environ["TEST_HANDLED_FILE"], "a") as out:
        out.write(f"{ctx.partition} {ctx.offset} {key} {time.monotonic_ns()}\n")


async def record(event: Any, ctx: Any) -> None:
    """Handle after `TEST_HANDLER_SLEEP` seconds, then note the record."""
    pause = float(os.environ.get("TEST_HANDLER_SLEEP", "0"))
    if pause:
        await asyncio.sleep(pause)
    _write(ctx)


async def gated(event: Any, ctx: Any) -> None:
    """Hold every record while the file `TEST_GATE_FILE` exists, then note it:
    a member that takes partitions over but completes nothing until told."""
    gate = os.environ["TEST_GATE_FILE"]
    # The gate is another process's file; a stat every 50 ms blocks nothing.
    while os.path.exists(gate):  # noqa: ASYNC110, ASYNC240
        await asyncio.sleep(0.05)
    _write(ctx)
