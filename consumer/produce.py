"""Produce (key, value) records to a topic: the engine behind `consumer produce`.

`produce_events` is reusable from tests and demos without the CLI. It uses an
idempotent producer (acks=all, no duplicates on internal retries), keeps a
bounded window of unacknowledged sends, paces to `rate` messages per second
when asked, and bounds every wait: a broker that is down yields a
`ProduceError` after `connect_timeout`, never a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaProducer

from consumer.errors import TransientError
from consumer.security import PLAINTEXT, KafkaSecurity

if TYPE_CHECKING:
    from consumer.observability.otel import Tracing

KeyValue = tuple[bytes | None, bytes]
#: Called with the number of newly acknowledged records. Must not block.
Progress = Callable[[int], None]


class ProduceError(TransientError):
    """The broker could not be reached, or records were not acknowledged in time."""


@dataclass(frozen=True, slots=True)
class ProduceSummary:
    topic: str
    sent: int  # acknowledged by the broker
    failed: int  # handed to the producer but not acknowledged
    elapsed: float  # seconds, from the first send to the last acknowledgement
    first_error: str | None = None

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed if self.elapsed > 0 else float(self.sent)

    def line(self) -> str:
        text = (f"sent {self.sent} to {self.topic} in {self.elapsed:.2f}s "
                f"({self.rate:,.0f} msg/s), failed {self.failed}")
        return f"{text}; first error: {self.first_error}" if self.first_error else text


async def _aiter(events: Iterable[KeyValue] | AsyncIterable[KeyValue]) -> AsyncIterator[KeyValue]:
    if isinstance(events, AsyncIterable):
        async for item in events:
            yield item
    else:
        for item in events:
            yield item


class _Pacer:
    """Spaces sends to `rate` per second against a fixed schedule (no drift)."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.start = time.monotonic()

    async def wait(self, index: int) -> None:
        if not self.interval:
            return
        ahead = self.start + index * self.interval - time.monotonic()
        if ahead > 0.001:  # sleeping for less is all overhead
            await asyncio.sleep(ahead)


async def produce_events(
    bootstrap: str,
    topic: str,
    events: Iterable[KeyValue] | AsyncIterable[KeyValue],
    *,
    rate: float | None = None,
    progress: Progress | None = None,
    client_id: str = "consumer-produce",
    security: KafkaSecurity = PLAINTEXT,
    connect_timeout: float = 15.0,
    send_timeout: float = 30.0,
    max_pending: int = 10_000,
    linger_ms: int = 5,
    tracing: Tracing | None = None,
    compression: str | None = None,
) -> ProduceSummary:
    """Send every (key, value) of `events` to `topic`; return when all were
    acknowledged or given up on (`failed` counts those). With `tracing`,
    each record is a `send <topic>` span whose context goes out in its
    `traceparent` header (a new trace per record, or the current one's child).

    Raises `ProduceError` if the producer cannot start within `connect_timeout`
    or a send cannot even be queued within `send_timeout`.
    """
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        **security.options(),
        client_id=client_id,
        enable_idempotence=True,  # implies acks=all
        linger_ms=linger_ms,
        compression_type=compression,
        request_timeout_ms=int(send_timeout * 1000),
    )
    try:
        await asyncio.wait_for(producer.start(), connect_timeout)
    except Exception as exc:  # timeout, connection refused, bad address: all the same here
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.stop(), 5.0)
        raise ProduceError(f"cannot connect to Kafka at {bootstrap}: {exc!r}") from exc

    sent = failed = 0
    first_error: str | None = None
    inflight: set[asyncio.Future[object]] = set()

    def acknowledged(fut: asyncio.Future[object]) -> None:
        # Runs on the loop as each delivery resolves, so progress is live.
        nonlocal sent, failed, first_error
        inflight.discard(fut)
        exc = None if fut.cancelled() else fut.exception()
        if fut.cancelled() or exc is not None:
            failed += 1
            first_error = first_error or repr(exc or "cancelled")
            return
        sent += 1
        if progress is not None:
            progress(1)

    traced = None
    if tracing is not None:
        from consumer.observability.otel import send_span

        traced = functools.partial(send_span, tracing, topic)
    pacer = _Pacer(rate)
    started = time.monotonic()
    try:
        index = 0
        async for key, value in _aiter(events):
            await pacer.wait(index)
            index += 1
            headers, span_done = (None, None) if traced is None else traced()
            try:
                fut = await asyncio.wait_for(
                    producer.send(topic, value, key=key, headers=headers), send_timeout)
            except Exception as exc:
                raise ProduceError(f"cannot queue a record for {topic}: {exc!r}") from exc
            inflight.add(fut)
            fut.add_done_callback(acknowledged)
            if span_done is not None:
                fut.add_done_callback(span_done)
            if len(inflight) >= max_pending:  # bound memory: wait for the oldest acks
                await asyncio.wait(set(inflight), timeout=send_timeout,
                                   return_when=asyncio.FIRST_COMPLETED)
        if inflight:
            await asyncio.wait(set(inflight), timeout=send_timeout)
    finally:
        for fut in list(inflight):
            fut.cancel()  # counted as failed by `acknowledged`
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.stop(), send_timeout)
    await asyncio.sleep(0)  # let callbacks of cancelled futures run before counting
    return ProduceSummary(topic, sent, failed, time.monotonic() - started, first_error)

