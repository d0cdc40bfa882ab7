"""Fresh PostgreSQL databases on the session server, one per test, so tests
that all use table `events` never see each other's rows."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


async def fresh_database(dsn: str, prefix: str = "t") -> str:
    """CREATE DATABASE with a unique name; return its DSN."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    conn: asyncpg.Connection[Any] = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(dsn, name)


async def fetch(dsn: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn: asyncpg.Connection[Any] = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()
