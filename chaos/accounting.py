"""The final accounting: every event counted.

Inputs, all read back after the run: the source topic (the truth of what was
produced: each record validated as the service does), the `events` table's
ids, the dead-letter records' original coordinates, and the handler ledger
(one line per handler invocation: id, attempt, monotonic ns). `account` is
pure; the `read_*` functions fetch the inputs.

Definitions (the issue's): lost = valid events without a row; doubled = rows
sharing an id (the primary key makes it impossible; counted anyway) plus rows
of ids never produced; dlq = dead-letter records whose origin is an invalid
record. `redone` = valid events handled in more than one delivery — an
invocation with attempt 1 starts a delivery; attempts 2+ are in-place retries
of the same delivery and are counted as `retried`, not as redone.
`overcount` = the sum of the per-key counters (`chaos.counters`) minus the
valid events; `keys_off` = keys whose counter differs from their valid events.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer

from chaos.counters import read as read_counters
from devtools.harness import dlq_origins, read_topic
from schemas import InvalidEvent, validate

Coord = tuple[int, int]  # (partition, offset)


@dataclass(frozen=True, slots=True)
class Produced:
    """The source topic read back: valid ids by coordinate, invalid coordinates."""

    valid: dict[Coord, str]
    invalid: frozenset[Coord]
    #: Valid events per record key (text), what the counters must end at.
    keys: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class Invocation:
    id: str
    attempt: int
    at_ns: int
    member: str


@dataclass(frozen=True, slots=True)
class Redelivery:
    """An extra delivery of an event, and the one before it (which did not
    get committed): the fault to blame started between the two."""

    previous_ns: int
    previous_member: str
    at_ns: int


@dataclass(frozen=True, slots=True)
class Accounts:
    produced: int
    valid: int
    invalid: int
    rows: int
    lost: int
    doubled: int
    dlq: int  # invalid records found in the dead-letter topic (distinct)
    dlq_missing: int  # invalid records not dead-lettered
    dlq_repeated: int  # extra dead-letter copies of the same record
    valid_dead_lettered: int
    redone: int  # valid events delivered to the handler more than once
    overcount: int  # sum of the per-key counters minus the valid events
    keys_off: int  # keys whose counter differs from their valid events
    redeliveries: int  # the extra deliveries themselves
    retried: int  # in-place retry attempts (attempt > 1)
    never_handled: int  # valid events with a row but no ledger line (must be 0)
    #: Every extra delivery, for attribution to faults.
    redeliveries_seen: list[Redelivery] = field(default_factory=list, repr=False)
    lost_sample: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (self.lost == 0 and self.doubled == 0 and self.dlq_missing == 0
                and self.valid_dead_lettered == 0 and self.never_handled == 0)


def account(produced: Produced, row_ids: Sequence[str], dlq_origins: Sequence[Coord],
            invocations: Iterable[Invocation], counters: Mapping[str, int]) -> Accounts:
    """Pure: the figures from what was read back."""
    valid_ids = set(produced.valid.values())
    rows = Counter(row_ids)
    stored = set(rows)
    lost = valid_ids - stored
    doubled = sum(n - 1 for n in rows.values()) + len(stored - valid_ids)
    dead = Counter(dlq_origins)
    dlq = produced.invalid & set(dead)
    deliveries: dict[str, list[tuple[int, str]]] = {}
    retried = 0
    for inv in invocations:
        if inv.attempt == 1:
            deliveries.setdefault(inv.id, []).append((inv.at_ns, inv.member))
        else:
            retried += 1
    extra = []
    for seen in deliveries.values():
        seen.sort()
        extra += [Redelivery(a[0], a[1], b[0]) for a, b in itertools.pairwise(seen)]
    return Accounts(
        produced=len(produced.valid) + len(produced.invalid),
        valid=len(produced.valid), invalid=len(produced.invalid),
        rows=sum(rows.values()), lost=len(lost), doubled=doubled,
        dlq=len(dlq), dlq_missing=len(produced.invalid - dlq),
        dlq_repeated=sum(n - 1 for c, n in dead.items() if c in produced.invalid),
        valid_dead_lettered=sum(1 for c in dead if c in produced.valid),
        redone=sum(1 for times in deliveries.values() if len(times) > 1),
        overcount=sum(counters.values()) - len(produced.valid),
        keys_off=sum(1 for k in set(counters) | set(produced.keys)
                     if counters.get(k, 0) != produced.keys.get(k, 0)),
        redeliveries=len(extra), retried=retried,
        never_handled=len(stored & valid_ids - set(deliveries)),
        redeliveries_seen=extra, lost_sample=sorted(lost)[:5])


async def read_produced(bootstrap: str, topic: str, idle: float = 3.0) -> Produced:
    """Every record of `topic` up to its end offsets, classified by `validate`."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", max_poll_records=10_000)
    valid: dict[Coord, str] = {}
    invalid: set[Coord] = set()
    keys: Counter[str] = Counter()
    await consumer.start()
    try:
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < idle:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                quiet_since = time.monotonic()
                for rec in records:
                    coord = (rec.partition, rec.offset)
                    try:
                        valid[coord] = validate(rec.value or b"").id
                    except InvalidEvent:
                        invalid.add(coord)
                    else:
                        keys[(rec.key or b"").decode("utf-8", "replace")] += 1
    finally:
        await consumer.stop()
    return Produced(valid, frozenset(invalid), keys)


async def read_row_ids(dsn: str) -> list[str]:
    conn: asyncpg.Connection[Any] = await asyncpg.connect(dsn)
    try:
        return [r["id"] for r in await conn.fetch("SELECT id FROM events")]
    finally:
        await conn.close()


def read_ledger(paths: Iterable[Path]) -> list[Invocation]:
    """Ledger lines of every member (`<member>.ledger`); a line cut short by
    a SIGKILL is skipped."""
    out: list[Invocation] = []
    for path in paths:
        if not path.exists():
            continue  # a member that never handled anything
        for line in path.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) == 5 and all(p.isdigit() for p in parts[1:]):
                out.append(Invocation(parts[0], int(parts[1]), int(parts[2]), path.stem))
    return out


async def gather_inputs(bootstrap: str, topic: str, dlq_topic: str, dsn: str,
                        ledgers: Iterable[Path]) -> tuple[Produced, list[str], list[Coord],
                                                          list[Invocation], dict[str, int]]:
    produced, rows, dead, counters = await asyncio.gather(
        read_produced(bootstrap, topic), read_row_ids(dsn),
        read_topic(bootstrap, dlq_topic, idle=3.0), read_counters(dsn))
    return produced, rows, dlq_origins(dead), read_ledger(ledgers), counters
