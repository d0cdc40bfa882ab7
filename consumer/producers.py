"""Replacing an idempotent producer whose numbering the broker no longer
accepts — shared by the dead-letter publisher and the Kafka sink.

A renewed producer has a new producer id, so a record the old one had sent
but whose acknowledgement was lost is sent again: a dead letter or a sink
record may be duplicated (at-least-once, as everywhere else downstream).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidProducerEpoch,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownProducerId,
)

#: An idempotent producer's numbering no longer matches the broker's: batches
#: it numbered were refused (e.g. while WRITE on the topic was revoked) and
#: aiokafka does not rewind. Every later send fails the same way; only a new
#: producer (a new producer id) recovers. aiokafka reports a bumped epoch as
#: `ProducerFenced` (`InvalidProducerEpoch` is the broker's code for it).
STALE_PRODUCER_ERRORS: tuple[type[BaseException], ...] = (
    OutOfOrderSequenceNumber, UnknownProducerId, ProducerFenced, InvalidProducerEpoch)


async def start_producer(options: dict[str, Any], within: float,
                         closed: Callable[[], bool]) -> AIOKafkaProducer | None:
    """A new producer, started within `within` seconds; None if its owner was closed
    meanwhile (it is stopped again, so a close racing this leaks nothing).
    Raises what `start` raised (or TimeoutError), after stopping it."""
    producer = AIOKafkaProducer(**options)
    try:
        async with asyncio.timeout(within):
            await producer.start()
    except BaseException:
        await stop_producer(producer, within)
        raise
    if closed():
        await stop_producer(producer, within)
        return None
    return producer


async def stop_producer(producer: AIOKafkaProducer, within: float) -> None:
    """Stop `producer` within `within` seconds: `stop` flushes and can hang while the broker
    is away. Never raises."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(within):
            await producer.stop()
