"""`none`: a sink that stores nothing (dry runs, handlers without output)."""

from __future__ import annotations

from collections.abc import Sequence

from consumer.sinks.base import Row


class NullSink:
    """Accepts every batch at once; counts rows for tests and benchmarks."""

    name = "none"
    max_writes = 1  # rows in submission order

    def __init__(self) -> None:
        self.rows_written = 0

    async def open(self) -> None:
        return None

    async def write(self, rows: Sequence[Row]) -> None:
        self.rows_written += len(rows)

    async def close(self) -> None:
        return None

    async def healthy(self) -> bool:
        return True
