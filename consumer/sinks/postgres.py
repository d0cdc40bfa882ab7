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

With `CONSUMER_DELIVERY=exactly_once` every write is one transaction that
also locks, checks and advances the progress of the batch's partitions in
`consumer_offsets` (`pg_offsets`): rows of a partition another member has
claimed since (a higher epoch) are not written — the transaction rolls back
and is retried without them, and they are reported `Fenced`; rows of records
the stored progress already marks done are dropped (their effect is in the
database already). The stored progress is the union of what was stored,
the engine's tracker (`positions`, bound by the service: records done
without a row or dead-lettered count too) and the offsets of the rows
written. `CONSUMER_SINK_APPLY` (either delivery) runs the user's
`await apply(connection, rows)` inside the same transaction.

Errors: data problems (SQLSTATE classes 22 and 23, or a value the driver
cannot encode) are `SinkError(retriable=False)` — the batcher bisects; anything
else (connection refused, server shutting down, timeouts) is retriable — the
batcher retries and the rows stay in flight.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from itertools import chain
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg

from consumer.config import load_callable
from consumer.engine.progress import Progress
from consumer.errors import ConfigError, Fenced, SinkError
from consumer.masking import mask_url
from consumer.sinks.base import COLUMNS, Row
from consumer.sinks.pg_offsets import (
    OFFSETS_MIGRATION,
    claim_partitions,
    read_partitions,
    store_progress,
)
from consumer.types import TP, Claim, Position, Positions

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


#: The user's hook: `await apply(connection, rows)` inside the write transaction.
Apply: TypeAlias = Callable[[Any, Sequence[Row]], Awaitable[None]]


def load_apply(spec: str | None) -> Apply | None:
    """`module:function` → the hook; `ConfigError` naming CONSUMER_SINK_APPLY."""
    if not spec:
        return None
    hook: Apply = load_callable(spec, "CONSUMER_SINK_APPLY")
    return hook


class _Conflict(Exception):
    """The direct COPY met a stored id: roll back, write the idempotent way."""


class _Raced(Exception):
    """Another transaction stored some of these records meanwhile: roll back, again."""


class _Stale(Exception):
    """Partitions whose stored epoch is not ours: roll back, retry without them."""

    def __init__(self, tps: list[TP]) -> None:
        super().__init__(tps)
        self.tps = tps


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

    def __init__(self, dsn: str, *, timeout: float = 30.0, group: str | None = None,
                 apply: Apply | None = None) -> None:
        """`group` (the consumer group) turns on exactly-once delivery: the
        service then `bind`s the engine's positions before the first write."""
        if not dsn.startswith(("postgresql://", "postgres://")):
            raise ConfigError(f"CONSUMER_SINK_URL: not a PostgreSQL URL: {mask_url(dsn)!r}")
        self._dsn = dsn
        self._timeout = timeout
        self._pool: asyncpg.Pool[Any] | None = None
        #: COPY straight into `events` (False while batches meet stored ids).
        self._direct = True
        self._group = group
        self._apply = apply
        self._positions: Positions | None = None

    def bind(self, positions: Positions) -> None:
        """Exactly-once: where each write reads the engine's progress."""
        self._positions = positions

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
                        if self._group is not None:
                            await conn.execute(OFFSETS_MIGRATION)
                finally:
                    await conn.close()
                # min_size=0: no background floor to restore (and log) while the
                # server is away; a write opens what it needs. One connection
                # more than the writes, so a health check never waits for one.
                self._pool = await asyncpg.create_pool(
                    self._dsn, min_size=0, max_size=self.max_writes + 1, init=_init_connection,
                    command_timeout=self._timeout,
                    # A member frozen inside a transaction (SIGSTOP, a stalled
                    # VM) holds its partitions' row locks: the server ends its
                    # session after this, so the new owner's claim goes through.
                    server_settings={"idle_in_transaction_session_timeout":
                                     str(int(self._timeout * 1000))},
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
        if self._group is not None:
            await self._write_exactly_once(rows)
            return
        try:
            async with asyncio.timeout(self._timeout), self._pool.acquire() as conn:
                if self._apply is not None:
                    await self._in_transaction(conn, self._store_and_apply, rows)
                elif not (self._direct and await self._copy_direct(conn, rows)):
                    await self._insert_new(conn, rows)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise classify(exc) from exc

    async def _in_transaction(self, conn: _Conn, body: Callable[..., Awaitable[Any]],
                              *args: Any) -> Any:
        """`await body(conn, *args)` in one transaction; once more the
        idempotent way if its direct COPY met a stored id."""
        while True:
            try:
                async with conn.transaction():
                    return await body(conn, *args)
            except _Conflict:
                self._direct = False
            except _Raced:
                continue

    async def _store_and_apply(self, conn: _Conn, rows: Sequence[Row]) -> None:
        """Inside a transaction: the rows into `events`, then the user's hook."""
        if self._direct:
            try:
                await conn.copy_records_to_table("events", records=rows, columns=COLUMNS)
            except asyncpg.UniqueViolationError:
                raise _Conflict from None
        else:
            await self._stage_and_insert(conn, rows)
        if self._apply is not None:
            await self._apply(conn, rows)

    # -- exactly-once ---------------------------------------------------------

    async def claim(self, partitions: Collection[TP]) -> dict[TP, Claim]:
        """Take `partitions` over: see `pg_offsets`. Raises `SinkError`."""
        if self._pool is None or self._group is None:
            raise SinkError("postgresql sink is not open for exactly-once delivery",
                            retriable=True)
        try:
            async with asyncio.timeout(self._timeout), self._pool.acquire() as conn:
                return await claim_partitions(conn, self._group, partitions)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise classify(exc) from exc

    async def _write_exactly_once(self, rows: Sequence[Row]) -> None:
        """One transaction for the rows of the partitions we still own; the
        rows of the others are reported `Fenced` (after the rest is written)."""
        assert self._pool is not None
        assert self._group is not None
        by_tp: dict[TP, list[int]] = {}
        for i, row in enumerate(rows):
            by_tp.setdefault(TP(row.topic, row.partition), []).append(i)
        positions = self._positions
        owned: dict[TP, Position] = {}
        fenced: list[TP] = []
        superseded: list[TP] = []  # refused by the database: a newer epoch
        for tp in by_tp:
            position = positions(tp) if positions is not None else None
            if position is None:
                fenced.append(tp)  # revoked here already: no claim to write under
            else:
                owned[tp] = position
        while owned:
            try:
                async with asyncio.timeout(self._timeout), self._pool.acquire() as conn:
                    await self._in_transaction(conn, self._write_owned, rows, by_tp, owned)
                break
            except _Stale as stale:
                fenced.extend(stale.tps)
                superseded.extend(stale.tps)
                for tp in stale.tps:
                    del owned[tp]
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                raise classify(exc) from exc
        if fenced:
            names = _names(fenced)
            log.warning("rows of partitions no longer ours not written (fenced): %s; of "
                        "which claimed by another member since our claim: %s", names,
                        _names(superseded) or "none")
            raise Fenced(f"postgresql: fenced partitions {names}",
                         written=[i for tp in owned for i in by_tp[tp]],
                         fenced=[i for tp in fenced for i in by_tp[tp]])

    async def _write_owned(self, conn: _Conn, rows: Sequence[Row], by_tp: dict[TP, list[int]],
                           owned: dict[TP, Position]) -> None:
        """Inside the transaction: write the rows not done yet (and the
        hook), then lock the partitions' rows, check the epochs again and
        that no other transaction stored these records meanwhile, and store
        the merged progress. Locking last keeps the lock to the end of the
        transaction, so the sink's two writes overlap all but that: locked
        first, the second write would wait for the whole of the first."""
        assert self._group is not None
        seen = _check(await read_partitions(conn, self._group, owned), owned)
        mine = {tp: [row for row in (rows[i] for i in by_tp[tp]) if row.offset not in seen[tp]]
                for tp in owned}
        new = [row for tp_rows in mine.values() for row in tp_rows]
        if new:
            await self._store_and_apply(conn, new)
        stored = _check(await read_partitions(conn, self._group, owned, lock=True), owned)
        progress = {}
        for tp, position in owned.items():
            offsets = [row.offset for row in mine[tp]]
            if any(offset in stored[tp] for offset in offsets):
                raise _Raced  # stored meanwhile: again, without those rows
            progress[tp] = stored[tp].merge(position.committable,
                                            chain(position.done, offsets))
        await store_progress(conn, self._group, progress)

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
        """The idempotent way, in a transaction of its own."""
        async with conn.transaction():
            await self._stage_and_insert(conn, rows)

    async def _stage_and_insert(self, conn: _Conn, rows: Sequence[Row]) -> None:
        """Inside a transaction: stage, then insert the rows not stored yet."""
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


def _check(stored: dict[TP, tuple[int, Progress]],
           owned: dict[TP, Position]) -> dict[TP, Progress]:
    """The stored progress of `owned`; raises `_Stale` (the transaction rolls
    back whole) for partitions whose stored epoch is not the one we claimed."""
    stale = [tp for tp, position in owned.items()
             if tp not in stored or stored[tp][0] != position.epoch]
    if stale:
        raise _Stale(stale)
    return {tp: stored[tp][1] for tp in owned}


def _names(tps: list[TP]) -> str:
    return ", ".join(sorted(f"{tp.topic}[{tp.partition}]" for tp in tps))


def _jsonb(data: bytes) -> bytes:
    """`jsonb` in binary form: a version byte, then the JSON text as is."""
    return b"\x01" + data


def _jsonb_text(data: bytes) -> str:
    return data[1:].decode()


async def _init_connection(conn: asyncpg.Connection[Any]) -> None:
    await conn.set_type_codec("jsonb", schema="pg_catalog", encoder=_jsonb,
                              decoder=_jsonb_text, format="binary")
    await conn.execute(_STAGING)
