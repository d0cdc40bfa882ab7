"""Fixtures for the value-format tests: a fresh database per test."""

from __future__ import annotations

import pytest

from tests.integration.sinks.dbs import fresh_database


@pytest.fixture
async def db_dsn(pg_dsn: str) -> str:
    """A new, empty database on the session PostgreSQL server."""
    return await fresh_database(pg_dsn, "formats")
