"""Kafka sink (`kafka://topic`): each row's event envelope as JSON, the
original key kept, through an idempotent producer (acks=all, no duplicates
from the producer's own retries).

At-least-once, not idempotent like the database sinks: a redelivered input
message is produced again, and so is a row whose acknowledgement was lost.
A batch that failed part-way never re-sends what was acknowledged: `write`
raises `PartlyWritten` naming the acknowledged rows, and the batcher retries
or bisects only the others. Consumers of the output topic dedupe on the
event `id`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from consumer.errors import PartlyWritten, SinkError
from consumer.producers import STALE_PRODUCER_ERRORS, start_producer, stop_producer
from consumer.security import PLAINTEXT, KafkaSecurity
from consumer.sinks.base import Row

# Errors that are the record's fault: retrying the same bytes cannot help.
_DATA_ERRORS: tuple[type[BaseException], ...] = (MessageSizeTooLargeError,)


def encode(row: Row) -> bytes:
    return orjson.dumps(row.envelope())


#: Seconds a send, and the producer's stop, may take (the chart's
#: terminationGracePeriodSeconds counts the stop).
SEND_TIMEOUT = 30.0


class KafkaSink:
    """`write` sends every row, then awaits every delivery within `timeout`."""

    name = "kafka"
    max_writes = 1  # rows in submission order

    def __init__(self, topic: str, bootstrap_servers: str, *, timeout: float = SEND_TIMEOUT,
                 client_id: str = "consumer-sink", security: KafkaSecurity = PLAINTEXT,
                 compression: str | None = None) -> None:
        self.topic = topic
        self._compression = compression
        self._bootstrap = bootstrap_servers
        self._security = security
        self._timeout = timeout
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self._closed = False

    async def open(self) -> None:
        if self._producer is not None:
            return
        options = {"bootstrap_servers": self._bootstrap, "client_id": self._client_id,
                   **self._security.options(), "enable_idempotence": True, "linger_ms": 5,
                   "compression_type": self._compression,
                   "request_timeout_ms": int(self._timeout * 1000)}
        try:
            producer = await start_producer(options, self._timeout, lambda: self._closed)
        except (KafkaError, OSError, TimeoutError) as exc:
            raise SinkError(f"kafka sink: cannot connect: {exc!r}", retriable=True) from exc
        if producer is None:  # closed while it started (a write reopening it)
            raise SinkError("kafka sink is closed", retriable=True)
        self._producer = producer

    async def write(self, rows: Sequence[Row]) -> None:
        if not rows:
            return
        if self._producer is None and not self._closed:
            await self.open()  # dropped after a stale-producer error: a new one
        producer = self._producer
        if producer is None:
            raise SinkError("kafka sink is not open", retriable=True)
        sent, failure, refused = await self._send_all(producer, rows)
        written = [i for i, fut in sent
                   if fut.done() and not fut.cancelled() and fut.exception() is None]
        if len(written) == len(rows):
            return
        stale = isinstance(failure, STALE_PRODUCER_ERRORS)
        for _, fut in sent:
            exc = fut.exception() if fut.done() and not fut.cancelled() else None
            if isinstance(exc, _DATA_ERRORS):
                refused = exc
            elif exc is not None:
                failure = failure or exc
                stale = stale or isinstance(exc, STALE_PRODUCER_ERRORS)
        if stale:
            # A refused batch breaks the idempotent producer's numbering for
            # the batches after it, and retrying on it fails forever: the next
            # write opens a new one.
            self._producer = None
            await stop_producer(producer, self._timeout)
        if refused is not None:
            # A row refused for its own bytes: not retriable, so the batcher
            # bisects what is left until that row is alone.
            raise PartlyWritten(f"kafka sink: {refused!r}", written, retriable=False)
        why = repr(failure) if failure is not None else "a delivery was not acknowledged"
        renewed = "; producer renewed" if stale else ""
        raise PartlyWritten(f"kafka sink: {why}{renewed}", written, retriable=True) from failure

    async def _send_all(self, producer: AIOKafkaProducer, rows: Sequence[Row],
                        ) -> tuple[list[tuple[int, asyncio.Future[Any]]],
                                   BaseException | None, BaseException | None]:
        """Send every row, then wait (within the timeout) for every delivery.
        Returns (position, delivery) of each row sent, why sending stopped
        (None if it did not), and the last row refused before sending (too
        large for the producer; the others are still sent)."""
        sent: list[tuple[int, asyncio.Future[Any]]] = []
        refused: BaseException | None = None
        try:
            async with asyncio.timeout(self._timeout):
                # Enqueue all first so the producer batches them, then await all.
                for i, row in enumerate(rows):
                    try:
                        sent.append((i, await producer.send(self.topic, encode(row),
                                                            key=row.key)))
                    except _DATA_ERRORS as exc:
                        refused = exc
                if sent:
                    await asyncio.wait([fut for _, fut in sent])
        except (KafkaError, OSError, TimeoutError) as exc:
            return sent, exc, refused  # what was not acknowledged is retried
        return sent, None, refused

    async def close(self) -> None:
        self._closed = True
        producer, self._producer = self._producer, None
        if producer is not None:
            await stop_producer(producer, self._timeout)

    async def healthy(self) -> bool:
        producer = self._producer
        if producer is None:
            return False
        try:
            async with asyncio.timeout(2):
                await producer.client.fetch_all_metadata()
        except (KafkaError, OSError, TimeoutError):
            return False
        return True
