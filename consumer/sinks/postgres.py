"""PostgreSQL sink: each batch is one transaction that stores every row once.

The fast path COPYs the batch straight into `events`. A batch that holds an id
already stored (a redelivery after a crash or a rebalance) makes that COPY
fail on the primary key; the batch is then written the idempotent way — COPY
into a temporary staging table, `INSERT … SELECT … ON CONFLICT (id) DO
NOTHING` — and the sink keeps to that way until a batch inserts all its rows
again, so a redelivered stretch pays for one failed COPY, not one per batch.
(The direct COPY costs PostgreSQL about a quarter less CPU per row.)

Rows go to the driver as they are (a `Row` is a tuple in column order); the
connection's `jsonb` codec takes `data` as the JSON bytes the row carries.

Two batches are written at once (`max_writes`). Should both hold the same
new ids in opposite orders (a duplicated event, or two members during a
rebalance), PostgreSQL aborts one as a deadlock (40P01): retriable, and its
retry meets the stored ids and takes the idempotent way.

Errors: data problems (SQLSTATE classes 22 and 23, or a value the driver
cannot encode) are `SinkError(retriable=False)` — the batcher bisects; anything
else (connection refused, server shutting down, timeouts) is retriable — the
batcher retries and the rows stay in flight.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg

from consumer.errors import ConfigError, SinkError
from consumer.masking import mask_url
from consumer.sinks.base import COLUMNS, Row

log = logging.getLogger("consumer.sinks")

if TYPE_CHECKING:
    #: A connection as the pool lends it.
    _Conn: TypeAlias = asyncpg.pool.PoolConnectionProxy[Any]

#: Seconds the pool gets to close gracefully before it is terminated (the
#: chart's terminationGracePeriodSeconds counts them).
CLOSE_TIMEOUT = 10.0

_MIGRATION = """
CREATE TABLE IF NOT EXISTS events (
    id          text PRIMARY KEY,
    type        text NOT NULL,
    version     integer NOT NULL,
    occurred_at timestamptz NOT NULL,
    data        jsonb NOT NULL,
    source      text,
    topic       text NOT NULL,
    partition   integer NOT NULL,
    "offset"    bigint NOT NULL,
    key         bytea,
    stored_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS events_type_occurred_at_idx ON events (type, occurred_at);
CREATE INDEX IF NOT EXISTS events_topic_partition_offset_idx
    ON events (topic, partition, "offset");
"""
# Concurrent instances start together on a deploy: one migrates, others wait.
_MIGRATION_LOCK = "SELECT pg_advisory_xact_lock(hashtext('consumer.events.migration'))"

# Per connection; emptied at each commit, so a batch never sees another's rows.
_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS events_staging (
    id text, type text, version integer, occurred_at timestamptz, data jsonb,
    source text, topic text, partition integer, "offset" bigint, key bytea
) ON COMMIT DELETE ROWS
"""
_COLS = ", ".join(f'"{c}"' for c in COLUMNS)
_INSERT = (f"INSERT INTO events ({_COLS}) SELECT {_COLS} FROM events_staging "
           "ON CONFLICT (id) DO NOTHING")


def classify(exc: BaseException) -> SinkError:
    """Map a driver exception to `SinkError` with the right `retriable` flag."""
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", "") or ""
        retriable = not state.startswith(("22", "23"))
    elif isinstance(exc, ValueError | TypeError | UnicodeError):
        retriable = False  # the driver could not encode a value: the row's fault
    else:
        retriable = True  # OSError, timeouts, a connection that went away
    return SinkError(f"postgresql: {type(exc).__name__}: {exc}", retriable=retriable)


class PostgresSink:
    """`open()` creates a small pool and runs the migration (retriable
    `SinkError` if the server is unreachable); `write()` is one transaction."""

    name = "postgres"

    #: Batches written at once, each on a connection of its own: PostgreSQL
    #: works on one while the next is encoded and sent.
    max_writes = 2

    def __init__(self, dsn: str, *, timeout: float = 30.0) -> None:
        if not dsn.startswith(("postgresql://", "postgres://")):
            raise ConfigError(f"CONSUMER_SINK_URL: not a PostgreSQL URL: {mask_url(dsn)!r}")
        self._dsn = dsn
        self._timeout = timeout
        self._pool: asyncpg.Pool[Any] | None = None
        #: COPY straight into `events` (False while batches meet stored ids).
        self._direct = True

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            async with asyncio.timeout(self._timeout):
                conn: asyncpg.Connection[Any] = await asyncpg.connect(self._dsn)
                try:
                    async with conn.transaction():
                        await conn.execute(_MIGRATION_LOCK)
                        await conn.execute(_MIGRATION)
                finally:
                    await conn.close()
                # min_size=0: no background floor to restore (and log) while the
                # server is away; a write opens what it needs. One connection
                # more than the writes, so a health check never waits for one.
                self._pool = await asyncpg.create_pool(
                    self._dsn, min_size=0, max_size=self.max_writes + 1, init=_init_connection,
                    command_timeout=self._timeout,
                )
                # Warm one connection (and its staging table) so the first batch
                # does not pay for the connect while a backlog waits.
                async with self._pool.acquire():
                    pass
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise classify(exc) from exc

    async def write(self, rows: Sequence[Row]) -> None:
        if not rows:
            return
        if self._pool is None:
            raise SinkError("postgresql sink is not open", retriable=True)
        try:
            async with asyncio.timeout(self._timeout), self._pool.acquire() as conn:
                if not (self._direct and await self._copy_direct(conn, rows)):
                    await self._insert_new(conn, rows)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise classify(exc) from exc

    async def _copy_direct(self, conn: _Conn, rows: Sequence[Row]) -> bool:
        """COPY into `events`; False if a row's id is stored already."""
        try:
            # One statement is its own transaction: all rows or none, without
            # the round trips of BEGIN and COMMIT.
            await conn.copy_records_to_table("events", records=rows, columns=COLUMNS)
        except asyncpg.UniqueViolationError:
            self._direct = False
            return False
        return True

    async def _insert_new(self, conn: _Conn, rows: Sequence[Row]) -> None:
        """The idempotent way: stage, then insert the rows not stored yet."""
        async with conn.transaction():
            await conn.copy_records_to_table("events_staging", records=rows, columns=COLUMNS)
            status = await conn.execute(_INSERT)
        # "INSERT 0 <n>": every row was new, so the redelivery is over.
        self._direct = status.endswith(f" {len(rows)}")

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await pool.close()
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                pool.terminate()

    async def healthy(self) -> bool:
        if self._pool is None:
            return False
        try:
            async with asyncio.timeout(2):
                return bool(await self._pool.fetchval("SELECT 1") == 1)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False


def _jsonb(data: bytes) -> bytes:
    """`jsonb` in binary form: a version byte, then the JSON text as is."""
    return b"\x01" + data


def _jsonb_text(data: bytes) -> str:
    return data[1:].decode()


async def _init_connection(conn: asyncpg.Connection[Any]) -> None:
    await conn.set_type_codec("jsonb", schema="pg_catalog", encoder=_jsonb,
                              decoder=_jsonb_text, format="binary")
    await conn.execute(_STAGING)
