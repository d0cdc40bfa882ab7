"""The SQLite sink on a real file when writes fail on the database: a failed
COMMIT is rolled back so the next write starts clean, and `healthy()` says
the sink cannot write until a write succeeds."""

from __future__ import annotations

import contextlib
import resource
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from consumer.errors import SinkError
from consumer.sinks.sqlite import SqliteSink
from tests.integration.sinks.test_sink_contract import rows

pytestmark = pytest.mark.integration


def stored_ids(path: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return [i for (i,) in conn.execute("SELECT id FROM events ORDER BY id")]


@contextlib.contextmanager
def files_capped_at(size: int) -> Iterator[None]:
    """No file of this process grows past `size` bytes: a write beyond it
    fails with EFBIG (SIGXFSZ ignored meanwhile), as on a full disk."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


async def test_a_commit_failing_on_a_full_disk_marks_the_sink_unhealthy_until_a_write_succeeds(
        tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    sink = SqliteSink(str(path))
    await sink.open()
    try:
        await sink.write(rows(5))
        # The batch's pages stay in SQLite's cache until COMMIT writes them
        # to the WAL: with the WAL unable to grow, the COMMIT fails.
        wal = (tmp_path / "events.db-wal").stat().st_size
        with files_capped_at(wal), pytest.raises(SinkError) as info:
            await sink.write(rows(5, start=5))
        assert info.value.retriable
        assert not await sink.healthy()  # the database still answers a read
        assert sink.unhealthy_reason is not None
        assert "sqlite" in sink.unhealthy_reason
        await sink.write(rows(5, start=5))  # room again: a clean transaction
        assert await sink.healthy()
        assert sink.unhealthy_reason is None
        await sink.write(rows(5, start=10))
    finally:
        await sink.close()
    assert stored_ids(path) == [r.id for r in rows(15)]


async def test_a_locked_database_marks_the_sink_unhealthy_until_a_write_succeeds(
        tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    sink = SqliteSink(str(path), busy_timeout=0.1)
    await sink.open()
    other = sqlite3.connect(path, isolation_level=None, timeout=0.1)
    try:
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        with pytest.raises(SinkError) as info:
            await sink.write(rows(3))
        assert info.value.retriable
        assert not await sink.healthy()
        other.execute("ROLLBACK")
        await sink.write(rows(3))
        assert await sink.healthy()
    finally:
        other.close()
        await sink.close()
    assert stored_ids(path) == [r.id for r in rows(3)]


async def test_a_commit_refused_by_a_reader_is_rolled_back_so_later_writes_succeed(
        tmp_path: Path) -> None:
    """A COMMIT that fails with SQLITE_BUSY leaves its transaction open
    (SQLite rolls back by itself only on I/O errors): a reader holding its
    lock in rollback-journal mode does that. The WAL file takes writers
    and readers at once, so the file is switched to rollback-journal mode
    first, on the sink's own connection (the only one open then)."""
    path = tmp_path / "events.db"
    sink = SqliteSink(str(path), busy_timeout=0.2)
    await sink.open()
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        conn = sink._conn
        assert conn is not None
        mode = await sink._call(lambda: conn.execute("PRAGMA journal_mode=DELETE").fetchone())
        assert mode == ("delete",)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM events").fetchone()  # holds SHARED
        # BEGIN IMMEDIATE and the inserts get their locks; COMMIT needs the
        # reader gone and gives up after the busy timeout.
        with pytest.raises(SinkError) as info:
            await sink.write(rows(3))
        assert info.value.retriable
        assert "locked" in str(info.value)
        assert not await sink.healthy()
        reader.execute("COMMIT")
        await sink.write(rows(3))  # not "cannot start a transaction within a transaction"
        await sink.write(rows(2, start=3))
        assert await sink.healthy()
    finally:
        reader.close()
        await sink.close()
    assert stored_ids(path) == [r.id for r in rows(5)]
