"""The README's `CONSUMER_SINK_APPLY` example, run as printed inside the
PostgreSQL sink's exactly-once transaction: a redelivered batch does not
add to the balances again."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest

from consumer.engine.progress import Progress
from consumer.sinks.base import Row
from consumer.sinks.postgres import PostgresSink
from consumer.types import TP, Position
from schemas import validate
from schemas.samples import sample_event
from tests.integration.sinks.dbs import fetch, fresh_database

pytestmark = pytest.mark.postgres

README = Path(__file__).resolve().parents[3] / "README.md"


def readme_example() -> ModuleType:
    blocks = re.findall(r"```python\n(# balances\.py.*?)```", README.read_text(), re.S)
    assert len(blocks) == 1, "the README's balances.py example"
    module = ModuleType("balances")
    exec(compile(blocks[0], "README.md:balances.py", "exec"), module.__dict__)
    return module


def rows(count: int) -> list[Row]:
    out = []
    for i in range(count):
        event: Any = validate(orjson.dumps(sample_event(i, type="order.created")))
        out.append(Row.build(id=event.id, type=event.type, version=event.version,
                             occurred_at=event.occurred_at,
                             data=event.data.model_dump(mode="json"), source=event.source,
                             topic="orders", partition=0, offset=i, key=None))
    return out


async def test_the_readme_apply_hook_counts_each_record_once(pg_dsn: str) -> None:
    dsn = await fresh_database(pg_dsn, "readme")
    sink = PostgresSink(dsn, group="g", apply=readme_example().apply)
    await sink.open()
    try:
        claims = await sink.claim([TP("orders", 0)])
        epoch = claims[TP("orders", 0)].epoch
        sink.bind(lambda tp: Position(epoch, None, ()))
        batch = rows(30)
        await sink.write(batch[:20])
        await sink.write(batch[10:])  # 10..19 again: a redelivery
    finally:
        await sink.close()
    expected: Counter[str] = Counter()
    for row in batch:
        expected[row.data["customer_id"]] += row.data["total_cents"]
    got = {r["customer"]: r["total_cents"] for r in await fetch(dsn, "SELECT * FROM balances")}
    assert got == dict(expected)
    stored = await fetch(dsn, "SELECT position, done FROM consumer_offsets")
    assert Progress.from_array(stored[0]["position"], stored[0]["done"]) == Progress(
        None, ((0, 30),))
