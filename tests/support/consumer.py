"""An in-memory `consumer.engine.source.Consumer` for the engine's unit tests."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from consumer.types import TP, Record


class FakeConsumer:
    """A group member with no broker: a test assigns partitions (the engine's
    listener is called as aiokafka would), queues records, makes commits fail
    and marks the member lost. `getmany` hands out queued records of unpaused
    assigned partitions and moves their positions past them (or to
    `positions`, set by the test, e.g. past a transaction marker)."""

    def __init__(self) -> None:
        self.assigned: set[TP] = set()
        self.queued: dict[TP, list[Record]] = {}
        self.positions: dict[TP, int] = {}
        self.ends: dict[TP, int] = {}
        self.committed: dict[TP, int] = {}
        self.commit_failures = 0  # the next this many commits raise
        self.commits = 0
        self.seeks: list[tuple[TP, int]] = []
        self.history: dict[TP, list[Record]] = {}
        self.lost = False
        self.listener: ConsumerRebalanceListener | None = None
        self._paused: set[TP] = set()
        self.started = self.stopped = False

    async def assign(self, *tps: TP) -> None:
        assert self.listener is not None, "subscribe first (the engine's run does)"
        self.assigned.update(tps)
        await self.listener.on_partitions_assigned(set(tps))

    async def revoke(self, *tps: TP) -> None:
        assert self.listener is not None
        await self.listener.on_partitions_revoked(set(tps))
        self.assigned.difference_update(tps)

    def queue(self, *records: Record) -> None:
        for record in records:
            tp = TP(record.topic, record.partition)
            self.queued.setdefault(tp, []).append(record)
            self.history.setdefault(tp, []).append(record)
            self.ends[tp] = max(self.ends.get(tp, 0), record.offset + 1)

    # -- the Consumer protocol --------------------------------------------

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    def subscribe(self, topics: Sequence[str], listener: ConsumerRebalanceListener) -> None:
        self.listener = listener

    async def getmany(self, *, timeout_ms: int,
                      max_records: int | None) -> Mapping[TP, Sequence[Record]]:
        out: dict[TP, list[Record]] = {}
        room = max_records if max_records is not None else 1_000_000
        for tp in sorted(self.assigned - self._paused):
            records = self.queued.get(tp, [])
            if records and room > 0:
                out[tp], self.queued[tp] = records[:room], records[room:]
                room -= len(out[tp])
                self.positions[tp] = max(self.positions.get(tp, 0), out[tp][-1].offset + 1)
        if not out:
            await asyncio.sleep(min(timeout_ms, 20) / 1000)
        return out

    def assignment(self) -> set[TP]:
        return set(self.assigned)

    def pause(self, *partitions: TP) -> None:
        self._paused.update(partitions)

    def resume(self, *partitions: TP) -> None:
        self._paused.difference_update(partitions)

    def paused(self) -> set[TP]:
        return set(self._paused)

    def highwater(self, tp: TP) -> int | None:
        return self.ends.get(tp)

    async def position(self, tp: TP) -> int:
        return self.positions.get(tp, 0)

    async def committed_offset(self, tp: TP) -> int | None:
        return self.committed.get(tp)

    def seek(self, tp: TP, offset: int) -> None:
        """Fetch from `offset` on: every record queued so far from there is
        handed out again, none below it."""
        self.seeks.append((tp, offset))
        self.queued[tp] = [r for r in self.history.get(tp, []) if r.offset >= offset]
        self.positions[tp] = offset

    async def end_offsets(self, partitions: Sequence[TP]) -> Mapping[TP, int]:
        return {tp: self.ends.get(tp, 0) for tp in partitions}

    async def commit(self, offsets: Mapping[TP, int]) -> None:
        self.commits += 1
        if self.commit_failures:
            self.commit_failures -= 1
            raise KafkaError("commit refused (test)")
        self.committed.update(offsets)

    def refused_topics(self) -> set[str]:
        return set()

    def member_lost(self) -> bool:
        return self.lost
