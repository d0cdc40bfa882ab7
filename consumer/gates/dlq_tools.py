"""Reading and replaying the dead-letter topic (behind `consumer dlq`).

Reading uses no consumer group: it assigns every partition, starts at the
beginning and stops at the end offsets taken when it started, so it never
commits, never joins a group and always terminates.

A replay sends each selected record, key and value unchanged, to its
original topic (or `to`), with its original headers, no `dlq.*` failure
headers, and `dlq.replay.count` one higher than before: if it fails again,
its next dead-letter record shows how often it was replayed. Null keys and
null header values stay null. A dead letter whose value or key was left out
(`dlq.value.dropped`, `dlq.key.dropped`) is never replayed: the replay is
refused (`DroppedRecords`), or such records are skipped on request.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from consumer.gates import dlq as h
from consumer.security import PLAINTEXT, KafkaSecurity


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record of the dead-letter topic."""

    topic: str
    partition: int
    offset: int
    timestamp: int  # ms since the epoch: when it was dead-lettered
    key: bytes | None
    value: bytes | None
    #: Kafka allows a header without a value: None.
    headers: tuple[tuple[str, bytes | None], ...]

    def header(self, name: str) -> str | None:
        """The last `name` header as text; None if absent, "" if it has no value."""
        for key, value in reversed(self.headers):
            if key == name:
                return "" if value is None else value.decode("utf-8", "replace")
        return None

    @property
    def dropped(self) -> list[str]:
        """What the dead-letter record left out of the original ("value",
        "key", "headers"): replaying it would send something else than what
        failed."""
        names = {k for k, _ in self.headers}
        dropped = [what for what, header in (("value", h.H_VALUE_DROPPED),
                                             ("key", h.H_KEY_DROPPED),
                                             ("headers", h.H_HEADERS_DROPPED))
                   if header in names]
        if self.key is None and self.original_value is None:
            # A keyless tombstone: no Kafka client sends one again.
            dropped.append("null key and value")
        return dropped

    @property
    def original_value(self) -> bytes | None:
        """The value as the original record had it: a keyless tombstone was
        dead-lettered with an empty value standing in for its null."""
        return None if self.header(h.H_VALUE_NULL) == "true" else self.value

    def coordinates(self) -> str:
        """`dlq-topic[partition]@offset (original topic[partition]@offset)`."""
        original = (f"{self.original_topic}[{self.original_partition}]@{self.original_offset}"
                    if self.original_topic else "unknown")
        return f"{self.topic}[{self.partition}]@{self.offset} (original {original})"

    def _int(self, name: str, default: int | None = None) -> int | None:
        raw = self.header(name)
        try:
            return int(raw) if raw is not None else default
        except ValueError:
            return default

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp / 1000, UTC)

    @property
    def original_topic(self) -> str | None:
        return self.header(h.H_TOPIC)

    @property
    def original_partition(self) -> int | None:
        return self._int(h.H_PARTITION)

    @property
    def original_offset(self) -> int | None:
        return self._int(h.H_OFFSET)

    @property
    def error_type(self) -> str:
        return self.header(h.H_ERROR_TYPE) or ""

    @property
    def error_message(self) -> str:
        return self.header(h.H_ERROR_MESSAGE) or ""

    @property
    def attempts(self) -> int | None:
        return self._int(h.H_ATTEMPTS)

    @property
    def replay_count(self) -> int:
        return self._int(h.H_REPLAY_COUNT, 0) or 0

    @property
    def schema_id(self) -> str | None:
        """The registry schema id of a wire-format value (consumer.formats)."""
        return self.header(h.H_SCHEMA_ID)


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters to show or replay; every given bound must hold.
    Times are the dead-lettering time; offsets are the dead-letter topic's
    (inclusive)."""

    error_types: frozenset[str] = frozenset()
    since: datetime | None = None
    until: datetime | None = None
    from_offset: int | None = None
    to_offset: int | None = None
    partition: int | None = None

    def matches(self, dl: DeadLetter) -> bool:
        return not (
            (self.error_types and dl.error_type not in self.error_types)
            or (self.since is not None and dl.time < self.since)
            or (self.until is not None and dl.time > self.until)
            or (self.from_offset is not None and dl.offset < self.from_offset)
            or (self.to_offset is not None and dl.offset > self.to_offset)
            or (self.partition is not None and dl.partition != self.partition)
        )


async def read_dead_letters(bootstrap_servers: str, topic: str, *,
                            security: KafkaSecurity = PLAINTEXT, step_timeout: float = 30.0,
                            ) -> AsyncGenerator[DeadLetter, None]:
    """Every record of `topic` up to its end offsets at the start. Raises
    `LookupError` if the topic does not exist, `TimeoutError` if the broker
    stops answering for `step_timeout` seconds."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, **security.options(),
                                group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await asyncio.wait_for(consumer.start(), step_timeout)
    try:
        # All-topics metadata: asking for the topic by name could auto-create it.
        if topic not in await asyncio.wait_for(consumer.topics(), step_timeout):
            raise LookupError(f"topic {topic!r} does not exist")
        # Assigning makes the client track the topic's metadata; then we know
        # its partitions.
        consumer.assign([TopicPartition(topic, 0)])
        async with asyncio.timeout(step_timeout):
            while not (partitions := consumer.partitions_for_topic(topic)):  # noqa: ASYNC110 - no event to wait on
                await asyncio.sleep(0.05)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends: dict[Any, int] = await asyncio.wait_for(consumer.end_offsets(tps), step_timeout)
        remaining = {tp for tp in tps if ends[tp] > await consumer.position(tp)}
        while remaining:
            batch = await asyncio.wait_for(consumer.getmany(*remaining, timeout_ms=1000),
                                           step_timeout)
            for tp, records in batch.items():
                for rec in records:
                    if rec.offset >= ends[tp]:
                        break
                    yield DeadLetter(rec.topic, rec.partition, rec.offset, rec.timestamp,
                                     rec.key, rec.value, tuple(rec.headers))
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()


def replay_headers(dl: DeadLetter) -> list[tuple[str, bytes | None]]:
    """Original headers, without `dlq.*`, plus the incremented replay counter."""
    kept = [(k, v) for k, v in dl.headers if not k.startswith("dlq.")]
    return [*kept, (h.H_REPLAY_COUNT, str(dl.replay_count + 1).encode())]


def replay_target(dl: DeadLetter, to: str | None) -> str | None:
    return to or dl.original_topic


class DroppedRecords(ValueError):
    """Dead letters whose value or key was left out (`dlq.value.dropped`,
    `dlq.key.dropped`): replaying them would send something else than the
    record that failed. `letters` are those dead letters."""

    def __init__(self, letters: Sequence[DeadLetter]) -> None:
        self.letters = list(letters)
        shown = "; ".join(f"{dl.coordinates()} without its {' and '.join(dl.dropped)}"
                          for dl in self.letters[:20])
        more = f"; and {len(self.letters) - 20} more" if len(self.letters) > 20 else ""
        super().__init__(
            f"{len(self.letters)} dead letter(s) lack what failed, nothing was replayed: "
            f"{shown}{more}. The originals are still at their coordinates in the source "
            "topic (while retention keeps them); --skip-dropped replays the others")


@dataclass(slots=True)
class ReplayResult:
    sent: Counter[str] = field(default_factory=Counter)  # by target topic
    skipped: int = 0  # no target (no dlq.original.topic and no --to)
    dropped: int = 0  # skipped: value or key left out (--skip-dropped)

    @property
    def total(self) -> int:
        return sum(self.sent.values())


async def replay(bootstrap_servers: str, letters: Sequence[DeadLetter], *, to: str | None,
                 security: KafkaSecurity = PLAINTEXT, dry_run: bool = False,
                 skip_dropped: bool = False,
                 progress: Callable[[int], None] | None = None,
                 step_timeout: float = 30.0) -> ReplayResult:
    """Send `letters` back (see the module docstring). Returns when every send
    was acknowledged; raises the first send error (what was acknowledged
    before it stays sent: a replay is at-least-once, run it again with the
    same filters after fixing the cause and the idempotent sinks absorb it).
    A dead letter whose value or key was left out is never replayed: raises
    `DroppedRecords` before sending anything, or with `skip_dropped` skips
    them (counted in `dropped`). Null keys and null header values are sent
    as null."""
    result = ReplayResult()
    dropped = [dl for dl in letters if dl.dropped]
    if dropped and not skip_dropped:
        raise DroppedRecords(dropped)
    producer: AIOKafkaProducer | None = None
    if not dry_run:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, **security.options(),
                                    client_id="consumer-dlq-replay", enable_idempotence=True)
        await asyncio.wait_for(producer.start(), step_timeout)
    try:
        pending: list[asyncio.Future[Any]] = []
        for dl in letters:
            target = replay_target(dl, to)
            if dl.dropped:
                result.dropped += 1
            elif target is None:
                result.skipped += 1
            else:
                if producer is not None:
                    fut = await asyncio.wait_for(
                        producer.send(target, dl.original_value, key=dl.key,
                                      headers=replay_headers(dl)), step_timeout)
                    pending.append(fut)
                result.sent[target] += 1
            if progress is not None:
                progress(1)
        if pending:
            await asyncio.wait_for(asyncio.gather(*pending), step_timeout)
    finally:
        if producer is not None:
            await asyncio.wait_for(producer.stop(), step_timeout)
    return result
