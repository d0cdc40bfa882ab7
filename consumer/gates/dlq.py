"""Dead-letter gate: the record as consumed (key and value unchanged, its own
headers kept) plus `dlq.*` headers saying where it came from and why
(DESIGN §2), sent by an idempotent producer.

A dead-lettered message is done only once the broker acknowledged the send.
`DeadLetterPublisher.send` never gives up while open: when the topic cannot be
written it retries with capped backoff, so the message stays in flight, the
engine's in-flight limit pauses partitions, and nothing is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    CorruptRecordException,
    InvalidMessageError,
    InvalidTimestampError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)

from consumer.backoff import Backoff
from consumer.errors import DeadLetterError
from consumer.gates.instruments import GateMetrics
from consumer.producers import STALE_PRODUCER_ERRORS, start_producer, stop_producer
from consumer.types import Record

log = logging.getLogger("consumer.gates.dlq")

H_TOPIC = "dlq.original.topic"
H_PARTITION = "dlq.original.partition"
H_OFFSET = "dlq.original.offset"
H_TIMESTAMP = "dlq.original.timestamp"
H_ERROR_TYPE = "dlq.error.type"
H_ERROR_MESSAGE = "dlq.error.message"
H_ATTEMPTS = "dlq.attempts"
H_GROUP = "dlq.consumer.group"
H_STACK = "dlq.error.stack"
H_FIRST_FAILURE = "dlq.first_failure"
H_LAST_FAILURE = "dlq.last_failure"
#: The registry schema id of a wire-format value that failed to decode or
#: validate (consumer.formats); absent for plain JSON.
H_SCHEMA_ID = "dlq.schema.id"
#: Added by `consumer dlq replay`, kept on the record through later failures.
H_REPLAY_COUNT = "dlq.replay.count"
#: Set when the record was too large for the dead-letter topic and its value
#: had to be left out: the original is still at its coordinates in the source.
H_VALUE_DROPPED = "dlq.value.dropped"

MAX_MESSAGE_BYTES = 1024
MAX_STACK_BYTES = 4096


def _truncate(text: str, limit: int, *, keep_tail: bool = False) -> bytes:
    raw = text.encode("utf-8", "replace")
    if len(raw) <= limit:
        return raw
    cut = raw[-limit:] if keep_tail else raw[:limit]
    return cut.decode("utf-8", "ignore").encode()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def error_fields(exc: BaseException) -> tuple[str, str]:
    """(error type, message) as the headers carry them. `InvalidEvent` reads
    as `<reason>: <detail>` (its str)."""
    return type(exc).__name__, str(exc) or repr(exc)


DlqHeaders = list[tuple[str, bytes | None]]


def dead_letter_headers(record: Record, exc: BaseException, *, attempts: int, group: str,
                        first_failure: float, last_failure: float,
                        ) -> DlqHeaders:
    """The original headers (minus stale `dlq.*` ones other than the replay
    counter) followed by this failure's `dlq.*` headers. Pure."""
    error_type, message = error_fields(exc)
    # The stack's tail is where the error was raised: keep that end.
    stack = "".join(traceback.format_exception(exc))
    # Kafka allows a header without a value (aiokafka gives None): keep it so.
    kept: DlqHeaders = [(k, None if v is None else bytes(v)) for k, v in record.headers
                        if not k.startswith("dlq.") or k == H_REPLAY_COUNT]
    return [*kept,
            (H_TOPIC, record.topic.encode()),
            (H_PARTITION, str(record.partition).encode()),
            (H_OFFSET, str(record.offset).encode()),
            (H_TIMESTAMP, str(record.timestamp).encode()),
            (H_ERROR_TYPE, error_type.encode()),
            (H_ERROR_MESSAGE, _truncate(message, MAX_MESSAGE_BYTES)),
            (H_ATTEMPTS, str(attempts).encode()),
            (H_GROUP, group.encode()),
            (H_STACK, _truncate(stack, MAX_STACK_BYTES, keep_tail=True)),
            (H_FIRST_FAILURE, iso(first_failure).encode()),
            (H_LAST_FAILURE, iso(last_failure).encode()),
            # Value formats hook: the schema id the refusal names, if any.
            *_schema_id(exc)]


def _schema_id(exc: BaseException) -> DlqHeaders:
    schema_id = getattr(exc, "schema_id", None)
    return [] if schema_id is None else [(H_SCHEMA_ID, str(schema_id).encode())]


#: Set when the key had to be left out (the dead-letter topic refused the
#: record with it); like a dropped value, the original is still in the source.
H_KEY_DROPPED = "dlq.key.dropped"
#: Set when the record's own headers had to be left out (their count).
H_HEADERS_DROPPED = "dlq.headers.dropped"
#: The original record had neither key nor value (a keyless tombstone). Kafka
#: clients refuse to send that, so the dead letter carries an empty value and
#: this header; a replay restores the null.
H_VALUE_NULL = "dlq.value.null"


@dataclass(frozen=True, slots=True)
class Letter:
    """A dead-letter record as it is about to be sent."""

    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]

    def sendable(self) -> Letter:
        """This letter in a form a Kafka client accepts: never both key and
        value null (an empty value and `dlq.value.null` stand in). Pure."""
        if self.key is not None or self.value is not None:
            return self
        dropped = any(k == H_VALUE_DROPPED for k, _ in self.headers)
        marker = () if dropped else ((H_VALUE_NULL, b"true"),)
        return Letter(None, b"", (*self.headers, *marker))

    def reduced(self, why: str) -> Letter | None:
        """The next smaller form after the topic refused this one for its
        content (`why`, e.g. `too_large`): without the stack trace, then
        without the value, then without the key, then without the record's
        own headers — each marked by a `dlq.*` header; the original stays at
        its coordinates in the source topic. None when nothing is left to
        drop. Pure."""
        names = [k for k, _ in self.headers]
        marker = why.encode()
        if H_STACK in names:
            return Letter(self.key, self.value, tuple(h for h in self.headers if h[0] != H_STACK))
        if self.value is not None and H_VALUE_DROPPED not in names:
            return Letter(self.key, None, (*self.headers, (H_VALUE_DROPPED, marker)))
        if self.key is not None:
            return Letter(None, self.value, (*self.headers, (H_KEY_DROPPED, marker)))
        own = [h for h in self.headers if not h[0].startswith("dlq.") or h[0] == H_REPLAY_COUNT]
        if own:
            kept = tuple(h for h in self.headers if h not in own)
            return Letter(None, self.value,
                          (*kept, (H_HEADERS_DROPPED, str(len(own)).encode())))
        return None


#: The topic refuses these bytes, whatever the broker's state: sending them
#: again cannot succeed, a smaller record may. (The client raises the last
#: ones itself, before anything reaches the broker.)
REFUSED_CONTENT: tuple[type[BaseException], ...] = (
    MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError,
    InvalidMessageError, CorruptRecordException, InvalidTimestampError,
    AssertionError, TypeError, ValueError)


def refusal_reason(exc: BaseException) -> str:
    """The `dlq.*.dropped` marker for a content refusal."""
    size = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError)
    return "too_large" if isinstance(exc, size) else "refused"


class Publisher(Protocol):
    """What the pipeline needs of a dead-letter publisher."""

    topic: str
    #: False while sends fail (readiness reports it).
    writing_ok: bool

    async def start(self) -> None: ...

    async def send(self, key: bytes | None, value: bytes | None,
                   headers: Sequence[tuple[str, bytes | None]]) -> None:
        """Returns once the broker acknowledged; raises `DeadLetterError`."""

    async def close(self) -> None: ...


_DROP_MARKERS = frozenset({H_VALUE_DROPPED, H_KEY_DROPPED, H_HEADERS_DROPPED})


def _origin(headers: Sequence[tuple[str, bytes | None]]) -> str:
    """`topic[partition]@offset` of the original record, from its headers."""
    named = {k: (v or b"").decode("utf-8", "replace") for k, v in headers}
    return f"{named.get(H_TOPIC)}[{named.get(H_PARTITION)}]@{named.get(H_OFFSET)}"


class DeadLetterPublisher:
    """Owns the idempotent producer for the dead-letter topic.

    `start()` connects (bounded by `send_timeout`); `send()` returns only once
    the record is acknowledged, retrying forever (capped backoff) until then;
    it raises `DeadLetterError` only when the publisher is closed meanwhile.
    `close()` is safe twice and bounded (a producer stop can hang while the
    broker is away).
    """

    def __init__(self, bootstrap_servers: str, topic: str, *, client_id: str = "consumer",
                 send_timeout: float = 10.0, max_backoff: float = 5.0,
                 metrics: GateMetrics | None = None, **producer_options: Any) -> None:
        self.topic = topic
        self._send_timeout = send_timeout
        self._backoff = Backoff(0.1, max_backoff)
        self._metrics = metrics or GateMetrics()
        # Built in `start()`: aiokafka binds to the running loop on construction.
        self._options: dict[str, Any] = {"bootstrap_servers": bootstrap_servers,
                                         "client_id": f"{client_id}-dlq",
                                         "enable_idempotence": True, **producer_options}
        self._producer: AIOKafkaProducer | None = None
        self._renewing = asyncio.Lock()
        self._started = False
        self._closed = asyncio.Event()
        #: False while sends fail (for /readyz and tests).
        self.writing_ok = True

    async def start(self) -> None:
        if self._started:
            return
        self._producer = AIOKafkaProducer(**self._options)
        try:
            await asyncio.wait_for(self._producer.start(), self._send_timeout)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._producer.stop(), self._send_timeout)
            raise
        self._started = True

    async def send(self, key: bytes | None, value: bytes | None,
                   headers: Sequence[tuple[str, bytes | None]]) -> None:
        """Returns once the broker acknowledged the record (or a reduced
        form of it); raises `DeadLetterError` only when closed meanwhile (the
        message stays in flight)."""
        full = Letter(key, value, tuple(headers)).sendable()
        letter = full
        attempt = 0
        delivery: asyncio.Future[Any] | None = None
        sent_by: AIOKafkaProducer | None = None
        while True:
            producer = self._producer
            if self._closed.is_set() or not self._started or producer is None:
                raise DeadLetterError("dead-letter publisher is closed; message left in flight")
            replaced = sent_by is not producer  # (a variable: `is` must not narrow types)
            if replaced:
                delivery = None  # its producer was replaced: send anew (at-least-once)
            try:
                if delivery is None:
                    sent_by = producer
                    delivery = await asyncio.wait_for(
                        producer.send(self.topic, letter.value, key=letter.key,
                                      headers=list(letter.headers)),
                        self._send_timeout)
                pending: asyncio.Future[Any] = delivery  # type: ignore[assignment]
                # Shielded: a timeout here must not cancel the batch the producer
                # still retries; the next round waits on the same delivery.
                await asyncio.wait_for(asyncio.shield(pending), self._send_timeout)
            except asyncio.CancelledError:
                raise
            except REFUSED_CONTENT as exc:
                # The same bytes can never succeed: send less instead.
                delivery = None
                smaller = letter.reduced(refusal_reason(exc))
                if smaller is not None:
                    letter = smaller.sendable()
                    log.error(  # noqa: TRY400 - the refusal is the whole story
                        "dead letter refused by %s (%r); sending a reduced record: %s",
                        self.topic, exc, ", ".join(
                            k for k, _ in letter.headers if k in _DROP_MARKERS) or
                        "without its stack trace")
                    continue
                attempt += 1
                letter = full
                await self._refused(full, exc, attempt)
            except Exception as exc:  # noqa: BLE001 - every other failure: try again
                if delivery is not None and delivery.done():
                    delivery = None  # it failed for good: send anew
                attempt += 1
                self.writing_ok = False
                self._metrics.dlq_send_failed()
                wait = self._backoff.delay(attempt)
                log.error(  # noqa: TRY400 - one line per retry, the traceback adds nothing
                    "dead-letter send to %s failed (attempt %d), message stays in flight; "
                          "retrying in %.2fs: %r", self.topic, attempt, wait, exc)
                if isinstance(exc, STALE_PRODUCER_ERRORS):
                    await self._renew(producer)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closed.wait(), wait)
            else:
                self.writing_ok = True
                return

    async def _refused(self, letter: Letter, exc: BaseException, attempt: int) -> None:
        """Not even the smallest form fits: only a change of the topic (its
        max.message.bytes) can help. The message stays in flight, its
        partition stuck — loudly — and after a backoff the whole record is
        tried again, so it goes out as soon as the topic takes it."""
        self.writing_ok = False
        self._metrics.dlq_refused()
        wait = self._backoff.delay(attempt)
        log.critical("%s cannot be dead-lettered: %s refuses even its smallest form (%r); "
                     "its partition is stuck at this offset until the topic takes it; "
                     "trying again in %.2fs", _origin(letter.headers), self.topic, exc, wait)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closed.wait(), wait)

    async def _renew(self, stale: AIOKafkaProducer) -> None:
        """Replace `stale` with a new producer (a new producer id) unless
        another sender already did. A failure leaves `stale` in place: the
        next attempt tries again."""
        async with self._renewing:
            done_already = self._producer is not stale  # (a variable: no type narrowing)
            if done_already or self._closed.is_set():
                return
            try:
                fresh = await start_producer(self._options, self._send_timeout,
                                             self._closed.is_set)
            except Exception as exc:  # noqa: BLE001 - logged; the send loop retries
                log.error("cannot renew the dead-letter producer: %r", exc)  # noqa: TRY400
                return
            if fresh is None:  # closed while it started: it was stopped again
                return
            self._producer = fresh
        log.warning("dead-letter producer renewed after a sequence error")
        await stop_producer(stale, self._send_timeout)

    async def close(self) -> None:
        self._closed.set()
        if self._started and self._producer is not None:
            self._started = False
            try:
                await asyncio.wait_for(self._producer.stop(), self._send_timeout)
            except TimeoutError:
                log.warning("dead-letter producer did not stop within %.0fs", self._send_timeout)
