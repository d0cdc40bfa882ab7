"""Exactly-once delivery in the PostgreSQL sink, against the real server:
fencing (a stale epoch's transaction rolls back whole, the other partitions
of the batch are still written), redelivered rows applied once, and
concurrent writes merging their progress without losing any offset."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from consumer.engine.progress import Progress
from consumer.errors import Fenced
from consumer.sinks.base import Row
from consumer.sinks.postgres import PostgresSink
from consumer.types import TP, Position
from tests.integration.exactly_once.hooks import COUNTERS, count_keys
from tests.integration.sinks.dbs import fetch, fresh_database

pytestmark = pytest.mark.postgres

T0, T1 = TP("orders", 0), TP("orders", 1)


def row(tp: TP, offset: int, key: bytes = b"k") -> Row:
    return Row.build(id=f"{tp.topic}-{tp.partition}-{offset}", type="order.created", version=1,
                     occurred_at=datetime(2026, 1, 1, tzinfo=UTC), data={"n": offset},
                     source=None, topic=tp.topic, partition=tp.partition, offset=offset, key=key)


class Owner:
    """One member's view: the epochs it claimed, nothing done in its tracker."""

    def __init__(self, sink: PostgresSink) -> None:
        self.sink = sink
        self.epochs: dict[TP, int] = {}
        self.committable: dict[TP, int] = {}
        sink.bind(self.position)

    def position(self, tp: TP) -> Position | None:
        epoch = self.epochs.get(tp)
        return None if epoch is None else Position(epoch, self.committable.get(tp), ())

    async def claim(self, *tps: TP) -> dict[TP, Progress]:
        claims = await self.sink.claim(tps)
        self.epochs.update({tp: c.epoch for tp, c in claims.items()})
        return {tp: c.progress for tp, c in claims.items()}


async def open_owner(dsn: str) -> Owner:
    sink = PostgresSink(dsn, group="g", apply=count_keys)
    await sink.open()
    return Owner(sink)


async def stored(dsn: str) -> dict[TP, tuple[int, Progress]]:
    rows = await fetch(dsn, "SELECT topic, partition, epoch, position, done FROM consumer_offsets")
    return {TP(r["topic"], r["partition"]): (r["epoch"], Progress.from_array(r["position"],
                                                                               r["done"]))
            for r in rows}


async def counted(dsn: str) -> int:
    return int((await fetch(dsn, "SELECT coalesce(sum(n), 0) AS n FROM counters"))[0]["n"])


async def test_a_stale_epoch_rolls_back_whole_and_the_other_partition_is_written(
        pg_dsn: str) -> None:
    dsn = await fresh_database(pg_dsn, "fence")
    await fetch(dsn, COUNTERS)
    zombie, owner = await open_owner(dsn), await open_owner(dsn)
    try:
        await zombie.claim(T0, T1)
        assert await owner.claim(T0) == {T0: Progress()}  # T0 moves: its epoch goes up
        assert owner.epochs[T0] == zombie.epochs[T0] + 1
        batch = [row(T0, 0), row(T1, 0), row(T0, 1), row(T1, 1)]
        with pytest.raises(Fenced) as refused:
            await zombie.sink.write(batch)
        assert refused.value.retriable
        assert refused.value.fenced == (0, 2)  # T0's rows: never written
        assert refused.value.written == (1, 3)  # T1's rows: written without them
        ids = {r["id"] for r in await fetch(dsn, "SELECT id FROM events")}
        assert ids == {"orders-1-0", "orders-1-1"}
        assert await counted(dsn) == 2  # the hook's effects of T0 rolled back too
        after = await stored(dsn)
        assert after[T0] == (owner.epochs[T0], Progress())  # untouched by the zombie
        assert after[T1][1] == Progress(None, ((0, 2),))

        # The owner writes T0; the zombie, not knowing yet, is refused again.
        await owner.sink.write([row(T0, 0), row(T0, 1)])
        with pytest.raises(Fenced):
            await zombie.sink.write([row(T0, 2)])
        assert await counted(dsn) == 4
        assert (await stored(dsn))[T0][1] == Progress(None, ((0, 2),))
    finally:
        await zombie.sink.close()
        await owner.sink.close()


async def test_rows_of_records_stored_done_are_not_applied_again(pg_dsn: str) -> None:
    dsn = await fresh_database(pg_dsn, "redo")
    await fetch(dsn, COUNTERS)
    first = await open_owner(dsn)
    try:
        await first.claim(T0)
        await first.sink.write([row(T0, o) for o in range(10)])
    finally:
        await first.sink.close()
    # A restart: the new owner gets the stored progress and, being handed
    # the same records again (say it did not skip them), applies none twice.
    second = await open_owner(dsn)
    try:
        progress = await second.claim(T0)
        assert progress[T0] == Progress(None, ((0, 10),))
        second.committable[T0] = 12  # its tracker: everything below 12 done
        await second.sink.write([row(T0, o) for o in range(5, 12)])
        assert await counted(dsn) == 12
        assert (await stored(dsn))[T0][1] == Progress(12, ())
    finally:
        await second.sink.close()


async def test_concurrent_writes_keep_every_offset(pg_dsn: str) -> None:
    dsn = await fresh_database(pg_dsn, "merge")
    await fetch(dsn, COUNTERS)
    owners = [await open_owner(dsn) for _ in range(2)]
    try:
        await owners[0].claim(T0, T1)
        owners[1].epochs = dict(owners[0].epochs)  # two pools of one member: 6 writers
        # Every third offset is missing: the stored progress must keep each
        # written offset as its own range, from whichever writer it came.
        offsets = [o for o in range(300) if o % 3]
        batches = [[row(tp, o, key=f"k{o % 7}".encode()) for o in offsets[i::12]]
                   for i in range(12) for tp in (T0, T1)]
        await asyncio.gather(*(owners[i % 2].sink.write(b) for i, b in enumerate(batches)))
        expected = Progress().merge(None, offsets)
        assert {tp: p for tp, (_, p) in (await stored(dsn)).items()} == {T0: expected,
                                                                         T1: expected}
        assert await counted(dsn) == 2 * len(offsets)
    finally:
        for owner in owners:
            await owner.sink.close()


async def test_one_record_written_by_two_writes_at_once_is_applied_once(pg_dsn: str) -> None:
    """Two copies of one record's rows (say, an old assignment's batch still
    buffered and the new one's) in two transactions at once: whichever
    commits second finds the record stored and applies nothing."""
    dsn = await fresh_database(pg_dsn, "race")
    await fetch(dsn, COUNTERS)
    owners = [await open_owner(dsn) for _ in range(2)]
    try:
        await owners[0].claim(T0)
        owners[1].epochs = dict(owners[0].epochs)
        for round_ in range(10):
            first = row(T0, round_)._replace(id=f"a{round_}")
            second = row(T0, round_)._replace(id=f"b{round_}")  # another id: no key conflict
            await asyncio.gather(owners[0].sink.write([first]), owners[1].sink.write([second]))
        assert await counted(dsn) == 10
        assert (await stored(dsn))[T0][1] == Progress(None, ((0, 10),))
    finally:
        for owner in owners:
            await owner.sink.close()
