"""`CONSUMER_SINK_APPLY` hooks the exactly-once tests run inside the sink's
write transaction (a non-idempotent counter per key), and a handler."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Sequence
from typing import Any

from consumer.sinks.base import Row

COUNTERS = """
CREATE TABLE IF NOT EXISTS counters (key bytea PRIMARY KEY, n bigint NOT NULL)
"""


async def count_keys(conn: Any, rows: Sequence[Row]) -> None:
    """n += 1 per row of each key: counted twice if a row were applied twice."""
    counts = Counter(row.key or b"" for row in rows)
    keys = sorted(counts)  # one lock order for every transaction
    await conn.execute(
        "INSERT INTO counters (key, n) SELECT * FROM unnest($1::bytea[], $2::bigint[]) "
        "ON CONFLICT (key) DO UPDATE SET n = counters.n + EXCLUDED.n",
        keys, [counts[k] for k in keys])


async def slow_store(event: Any, ctx: Any) -> None:
    """A handler that stores each event after `TEST_HANDLER_SLEEP` seconds, so
    a member has work in flight when it is frozen."""
    await asyncio.sleep(float(os.environ.get("TEST_HANDLER_SLEEP", "0")))
    ctx.emit(event)
