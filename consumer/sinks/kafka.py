"""Kafka sink (`kafka://topic`): each row's event envelope as JSON, the
original key kept, through an idempotent producer (acks=all, no duplicates
from the producer's own retries).

At-least-once, not idempotent like the database sinks: a batch that failed
part-way is sent again whole, and a redelivered input message is produced
again. Consumers of the output topic dedupe on the event `id`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from consumer.config import mask_url
from consumer.errors import ConfigError, SinkError
from consumer.producers import STALE_PRODUCER_ERRORS, start_producer, stop_producer
from consumer.security import PLAINTEXT, KafkaSecurity
from consumer.sinks.base import Row

# Errors that are the record's fault: retrying the same bytes cannot help.
_DATA_ERRORS: tuple[type[BaseException], ...] = (MessageSizeTooLargeError,)


def kafka_topic(url: str) -> str:
    topic = url.removeprefix("kafka://").strip("/")
    if not url.startswith("kafka://") or not topic or "/" in topic:
        raise ConfigError(f"CONSUMER_SINK_URL: expected kafka://topic, got {mask_url(url)!r}")
    return topic


def encode(row: Row) -> bytes:
    return orjson.dumps(row.envelope())


#: Seconds a send, and the producer's stop, may take (the chart's
#: terminationGracePeriodSeconds counts the stop).
SEND_TIMEOUT = 30.0


class KafkaSink:
    """`write` sends every row, then awaits every delivery within `timeout`."""

    name = "kafka"

    def __init__(self, topic: str, bootstrap_servers: str, *, timeout: float = SEND_TIMEOUT,
                 client_id: str = "consumer-sink", security: KafkaSecurity = PLAINTEXT) -> None:
        self.topic = topic
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
        try:
            async with asyncio.timeout(self._timeout):
                # Enqueue all first so the producer batches them, then await all.
                futures: list[asyncio.Future[Any]] = [
                    await producer.send(self.topic, encode(row), key=row.key) for row in rows
                ]
                await asyncio.gather(*futures)
        except _DATA_ERRORS as exc:
            raise SinkError(f"kafka sink: {exc!r}", retriable=False) from exc
        except STALE_PRODUCER_ERRORS as exc:
            # Retrying on this producer fails forever: the retry opens a new one.
            self._producer = None
            await stop_producer(producer, self._timeout)
            raise SinkError(f"kafka sink: {exc!r}; producer renewed", retriable=True) from exc
        except (KafkaError, OSError, TimeoutError) as exc:
            raise SinkError(f"kafka sink: {exc!r}", retriable=True) from exc

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
