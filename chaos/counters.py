"""The chaos run's non-idempotent write: a counter per key, incremented by
`CONSUMER_SINK_APPLY=chaos.counters:apply` inside the sink's write
transaction (`n = n + 1` per row, so a row applied twice counts twice).

With `exactly_once` the counters must end equal to the valid events per key
(`overcount=0`); with `at_least_once` every redelivered batch adds again,
which is what the run's `overcount` shows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import asyncpg

from consumer.sinks.base import Row

TABLE = """
CREATE TABLE IF NOT EXISTS chaos_counters (key text PRIMARY KEY, n bigint NOT NULL)
"""


async def apply(conn: Any, rows: Sequence[Row]) -> None:
    counts = Counter((row.key or b"").decode("utf-8", "replace") for row in rows)
    keys = sorted(counts)  # one lock order: two writes never deadlock on counters
    await conn.execute(
        "INSERT INTO chaos_counters (key, n) SELECT * FROM unnest($1::text[], $2::bigint[]) "
        "ON CONFLICT (key) DO UPDATE SET n = chaos_counters.n + EXCLUDED.n",
        keys, [counts[k] for k in keys])


async def create(dsn: str) -> None:
    conn: asyncpg.Connection[Any] = await asyncpg.connect(dsn)
    try:
        await conn.execute(TABLE)
    finally:
        await conn.close()


async def read(dsn: str) -> dict[str, int]:
    conn: asyncpg.Connection[Any] = await asyncpg.connect(dsn)
    try:
        return {r["key"]: r["n"] for r in await conn.fetch("SELECT key, n FROM chaos_counters")}
    finally:
        await conn.close()
