"""Exactly-once resume in the engine, against an in-memory consumer and an
in-memory offset store: the claim's epoch reaches the sink's view, the
consumer seeks to the stored position when it is ahead of Kafka's, records
the stored progress marks done are completed without being handled, and
records fetched while the claim is under way are fetched again."""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from aiokafka.structs import ConsumerRecord

from consumer.config import load_settings
from consumer.engine.engine import Engine
from consumer.engine.progress import Progress
from consumer.observability.metrics import Metrics
from consumer.types import TP, Claim, Done, Positions, Record, RecordProcessor
from tests.support.consumer import FakeConsumer
from tests.support.waiting import until

TP0 = TP("t", 0)


def rec(offset: int) -> Record:
    return ConsumerRecord("t", 0, offset, 0, 0, b"k", b"v", None, 1, 1, [])


class Store:
    """What the PostgreSQL sink answers to a claim, held in memory."""

    def __init__(self, progress: Progress, epoch: int = 3) -> None:
        self.progress = progress
        self.epoch = epoch
        self.gate = asyncio.Event()
        self.gate.set()
        self.positions: Positions | None = None

    async def claim(self, partitions: Collection[TP]) -> dict[TP, Claim]:
        await self.gate.wait()
        return {tp: Claim(self.epoch, self.progress) for tp in partitions}

    def bind(self, positions: Positions) -> None:
        self.positions = positions


class Handles(RecordProcessor):
    def __init__(self) -> None:
        self.handled: list[int] = []

    async def process(self, record: Record, done: Done) -> None:
        self.handled.append(record.offset)
        done(record)


async def running(fake: FakeConsumer, store: Store,
                  ) -> tuple[Engine, Handles, asyncio.Task[int]]:
    settings = load_settings(bootstrap_servers="127.0.0.1:9", topics=["t"],
                             sink_url="postgresql://u@127.0.0.1:9/db",
                             delivery="exactly_once", commit_interval=0.05)
    processor = Handles()
    engine = Engine(settings, processor, Metrics(), consumer=fake, offsets=store)
    store.bind(engine.position)
    task = asyncio.create_task(engine.run())
    await until(lambda: fake.listener is not None)
    return engine, processor, task


async def test_resume_seeks_to_the_stored_position_and_skips_what_is_done() -> None:
    fake, store = FakeConsumer(), Store(Progress(5, ((7, 9),)))
    fake.committed[TP0] = 2  # the Kafka commit lags the database (a crash in between)
    fake.queue(*(rec(o) for o in range(11)))
    engine, processor, task = await running(fake, store)
    try:
        await fake.assign(TP0)
        assert fake.seeks == [(TP0, 5)]
        await until(lambda: fake.committed.get(TP0) == 11)
        assert processor.handled == [5, 6, 9, 10]  # 7 and 8: done, never handled
        assert store.positions is not None
        position = store.positions(TP0)
        assert position is not None
        assert (position.epoch, position.committable, list(position.done)) == (3, 11, [])
    finally:
        engine.request_stop()
        assert await task == 0


async def test_kafka_ahead_of_the_database_resumes_from_kafka() -> None:
    """Records done without a row after the last write: Kafka knows, the
    database does not; starting at Kafka's offset is right."""
    fake, store = FakeConsumer(), Store(Progress(5, ((9, 10),)))
    fake.committed[TP0] = 8
    fake.queue(*(rec(o) for o in range(8, 12)))
    engine, processor, task = await running(fake, store)
    try:
        await fake.assign(TP0)
        assert fake.seeks == [(TP0, 8)]
        await until(lambda: fake.committed.get(TP0) == 12)
        assert processor.handled == [8, 10, 11]
    finally:
        engine.request_stop()
        assert await task == 0


async def test_records_fetched_while_claiming_are_fetched_again() -> None:
    fake, store = FakeConsumer(), Store(Progress())
    store.gate.clear()  # the database is slow to answer the claim
    fake.queue(*(rec(o) for o in range(4)))
    engine, processor, task = await running(fake, store)
    try:
        assigning = asyncio.create_task(fake.assign(TP0))
        await until(lambda: not fake.queued.get(TP0))  # fetched, and dropped
        assert processor.handled == []
        assert store.positions is not None
        assert store.positions(TP0) is None  # not claimed: nothing may be written
        await engine._skip_idle()  # the periodic commit's step meanwhile
        assert engine._states[TP0].tracker.committable is None  # not past the dropped records
        store.gate.set()
        await assigning
        assert fake.seeks == [(TP0, 0)]
        await until(lambda: fake.committed.get(TP0) == 4)
        assert processor.handled == [0, 1, 2, 3]
    finally:
        engine.request_stop()
        assert await task == 0
