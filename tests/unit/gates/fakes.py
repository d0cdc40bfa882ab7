"""In-test doubles for the pipeline's I/O neighbours (batcher, dead-letter
publisher) — unit tests exercise the routing logic only."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from consumer.config import Settings
from consumer.errors import DeadLetterError, SinkError
from consumer.gates.context import Context
from consumer.pipeline import Pipeline
from consumer.sinks.base import Row
from consumer.sinks.batcher import RowsRefused
from consumer.types import Handler, Record
from schemas.samples import sample_bytes
from tests.support.records import consumer_record


def record(offset: int = 0, value: bytes | None = None, key: bytes | None = b"k",
           headers: Sequence[tuple[str, bytes]] = (), topic: str = "t") -> Record:
    """A record of partition 0 carrying a valid sample event (with its
    event's key) unless `value` is given; its timestamp follows its offset."""
    if value is None:
        key, value = sample_bytes(offset)
    return consumer_record(offset, topic=topic, key=key, value=value, headers=headers,
                           timestamp=1_700_000_000_000 + offset)


class FakeBatcher:
    """Futures stay pending until the test resolves them; `refuse` fails a row."""

    def __init__(self) -> None:
        from consumer.sinks import open_sink

        self.sink = open_sink("none")
        self.rows: list[tuple[Row, asyncio.Future[None]]] = []
        self.units: list[tuple[asyncio.Future[None], list[asyncio.Future[None]]]] = []
        self.started = self.closed = False

    def submit(self, row: Row) -> asyncio.Future[None]:
        return self.submit_many((row,))

    def submit_many(self, rows: Sequence[Row]) -> asyncio.Future[None]:
        """One unit: resolves (as the real batcher's do, at once) when its
        rows' futures all resolved; a refused row makes it fail with
        `RowsRefused` naming that row's index."""
        loop = asyncio.get_running_loop()
        futs = [loop.create_future() for _ in rows]
        self.rows.extend(zip(rows, futs, strict=True))
        unit: asyncio.Future[None] = loop.create_future()
        self.units.append((unit, futs))
        return unit

    def _settle(self) -> None:
        for unit, futs in self.units:
            if unit.done() or not all(f.done() for f in futs):
                continue
            bad = [i for i, f in enumerate(futs) if f.exception() is not None]
            if bad:
                unit.set_exception(RowsRefused("refused", bad))
            else:
                unit.set_result(None)

    def write_all(self) -> None:
        for _, fut in self.rows:
            if not fut.done():
                fut.set_result(None)
        self._settle()

    def refuse(self, index: int) -> None:
        self.rows[index][1].set_exception(SinkError("refused", retriable=False))
        self._settle()

    async def start(self) -> None:
        self.started = True

    async def flush(self) -> None:
        self.write_all()

    async def close(self) -> None:
        self.closed = True

    async def healthy(self) -> bool:
        return True


class FakePublisher:
    topic = "t.dlq"
    writing_ok = True

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[tuple[bytes | None, bytes | None, dict[str, bytes]]] = []
        self.fail = fail
        self.attempts = 0
        self._closed = asyncio.Event()

    async def start(self) -> None:
        return None

    async def send(self, key: bytes | None, value: bytes | None,
                   headers: Sequence[tuple[str, bytes | None]]) -> None:
        while self.fail:
            self.attempts += 1
            if self._closed.is_set():
                raise DeadLetterError("closed")
            await asyncio.sleep(0.01)
        self.sent.append((key, value, {k: v or b"" for k, v in headers}))

    async def close(self) -> None:
        self._closed.set()


class Done:
    def __init__(self) -> None:
        self.records: list[Record] = []

    def __call__(self, rec: Record) -> None:
        self.records.append(rec)

    @property
    def offsets(self) -> list[int]:
        return [r.offset for r in self.records]


async def emit_handler(event: Any, ctx: Context) -> None:
    ctx.emit(event)


async def noop_handler(event: Any, ctx: Context) -> None:
    return None


async def process(proc: Pipeline, record: Record, done: Callable[[Record], None]) -> None:
    """`record` down the pipeline as the engine hands a per-event processor
    one: a run of one."""

    def each(records: Sequence[Record]) -> None:
        for r in records:
            done(r)

    await proc.process_run((record,), each)


def pipeline(handler: Handler = noop_handler, *, fail_dlq: bool = False,
             **settings: Any) -> tuple[Pipeline, FakeBatcher, FakePublisher]:
    opts: dict[str, Any] = {"retry_base_delay": 0.0, "retry_max_delay": 0.0,
                            "sink_url": "none", **settings}
    batcher, publisher = FakeBatcher(), FakePublisher(fail_dlq)
    return (Pipeline(Settings(**opts), handler=handler, batcher=batcher, publisher=publisher),
            batcher, publisher)
