"""SQLite sink, the embedded default: WAL mode, one transaction per batch,
`INSERT OR IGNORE` on the primary key `id` (idempotent like the PostgreSQL
sink). Any failure inside the transaction, COMMIT included, rolls it back,
so the next write starts clean; `healthy()` is False while writes fail on
the database. sqlite3 blocks, so every call runs on one dedicated thread that owns the
connection; the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from consumer.errors import ConfigError, SinkError
from consumer.masking import mask_url
from consumer.sinks.base import COLUMNS, Row

T = TypeVar("T")

_MIGRATION = """
CREATE TABLE IF NOT EXISTS events (
    id          TEXT PRIMARY KEY,
    type        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    occurred_at TEXT NOT NULL,
    data        TEXT NOT NULL,
    source      TEXT,
    topic       TEXT NOT NULL,
    partition   INTEGER NOT NULL,
    "offset"    INTEGER NOT NULL,
    key         BLOB,
    stored_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS events_type_occurred_at_idx ON events (type, occurred_at);
CREATE INDEX IF NOT EXISTS events_topic_partition_offset_idx
    ON events (topic, partition, "offset");
"""
_COLS = ", ".join(f'"{c}"' for c in COLUMNS)
_INSERT = f"INSERT OR IGNORE INTO events ({_COLS}) VALUES ({', '.join('?' * len(COLUMNS))})"


def sqlite_path(url: str) -> str:
    """`sqlite:///rel/path.db` → `rel/path.db`; `sqlite:////abs.db` → `/abs.db`."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ConfigError(
            f"CONSUMER_SINK_URL: expected sqlite:///path.db (or sqlite:////abs/path.db), "
            f"got {mask_url(url)!r}")
    return url[len(prefix):]


class SqliteSink:
    """`open()` creates the file, switches it to WAL and migrates."""

    name = "sqlite"
    max_writes = 1  # rows in submission order

    def __init__(self, path: str, *, busy_timeout: float = 5.0) -> None:
        self.path = path
        self._busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None
        #: Why the last write failed on the database; None once one succeeds.
        self.unhealthy_reason: str | None = None

    async def _call(self, fn: Callable[[], T]) -> T:
        assert self._thread is not None
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn)

    async def open(self) -> None:
        if self._thread is not None:
            return
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-sink")
        try:
            await self._call(self._open_blocking)
        except sqlite3.Error as exc:
            await self.close()
            raise SinkError(f"sqlite: cannot open {self.path}: {exc}", retriable=True) from exc

    def _open_blocking(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, one per batch.
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout,
                               isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable against process crashes in WAL mode (not power loss).
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_MIGRATION)
        self._conn = conn

    async def write(self, rows: Sequence[Row]) -> None:
        if not rows:
            return
        if self._thread is None:
            raise SinkError("sqlite sink is not open", retriable=True)
        params = [
            (r.id, r.type, r.version, r.occurred_at.isoformat(), r.data_json.decode(),
             r.source, r.topic, r.partition, r.offset, r.key)
            for r in rows
        ]
        try:
            await self._call(lambda: self._write_blocking(params))
        except (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.ProgrammingError,
                sqlite3.InterfaceError) as exc:
            raise SinkError(f"sqlite: {type(exc).__name__}: {exc}", retriable=False) from exc
        except sqlite3.Error as exc:
            # Locked, busy, disk full, I/O: the database, not the rows.
            self.unhealthy_reason = f"sqlite: {type(exc).__name__}: {exc}"
            raise SinkError(self.unhealthy_reason, retriable=True) from exc
        self.unhealthy_reason = None

    def _write_blocking(self, params: Sequence[tuple[object, ...]]) -> None:
        conn = self._conn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(_INSERT, params)
            conn.execute("COMMIT")
        except BaseException:
            # COMMIT included: a failed COMMIT (busy, a deferred constraint)
            # leaves the transaction open, and every later BEGIN would fail.
            # Some errors (disk full, I/O) already rolled it back.
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(thread, conn.close)
        thread.shutdown(wait=False)

    async def healthy(self) -> bool:
        """False while writes fail on the database (`unhealthy_reason`), even
        though it still answers a read."""
        if self._thread is None or self._conn is None or self.unhealthy_reason is not None:
            return False
        conn = self._conn
        try:
            return bool(await self._call(lambda: conn.execute("SELECT 1").fetchone()))
        except sqlite3.Error:
            return False
