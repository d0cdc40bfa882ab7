"""Validation gate: record bytes → events, for a whole run in one pass
(`schemas.validate_many`), cut in order into parts — stretches of valid
records and single invalid ones.

An invalid record's part carries its `InvalidEvent` (never retriable) as the
run's error, so it goes straight to the dead-letter path: nothing below this
gate handles it. The parts go down the chain in record order, so the
handler, the dead-letter topic and the breaker see the records in the order
they came.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from consumer.formats import ValueFormat, decode_all, prepare_until_ready
from consumer.gates.context import NextRun, RunContext
from consumer.types import Record, Undecodable
from schemas import InvalidEvent, Reason, validate_many


@dataclass(slots=True)
class Segment:
    """A stretch of a run: valid records with their events, or one invalid
    record with why (`error`)."""

    records: list[Record]
    events: list[Any]
    error: InvalidEvent | None = None


#: Told of each validated run: (its segments, start and end in ns, size).
OnValidated: TypeAlias = Callable[[Sequence[Segment], int, int, int], None]


def _undecodable(value: object) -> InvalidEvent | None:
    """The refusal of a value the Kafka client could not decode."""
    return InvalidEvent(Reason.UNDECODABLE, value.reason) if type(value) is Undecodable else None


def validate_run(records: Sequence[Record], *, allow_unknown: bool = False,
                 value_format: ValueFormat | None = None) -> list[Segment]:
    """Validate a run in one pass and cut it, in order, into segments of
    valid records and single invalid ones. With a `value_format` (its
    `prepare` of these values done) the format decodes and validates."""
    if value_format is None:
        results = validate_many([r.value for r in records], allow_unknown=allow_unknown)
    else:
        results = decode_all(value_format, [r.value for r in records])
    if results and InvalidEvent not in map(type, results):  # all valid: checked in C
        return [Segment(list(records), results)]
    segments: list[Segment] = []
    current = Segment([], [])
    for record, result in zip(records, results, strict=True):
        if isinstance(result, InvalidEvent):
            if current.records:
                segments.append(current)
                current = Segment([], [])
            segments.append(Segment([record], [], _undecodable(record.value) or result))
        else:
            current.records.append(record)
            current.events.append(result)
    if current.records:
        segments.append(current)
    return segments


class Validation:
    """The gate. With a `value_format` (consumer.formats: a Schema Registry
    format) the writer schemas the run needs are fetched first — retried
    with backoff while the registry cannot answer, the records staying in
    flight — and the format decodes. `on_validated` (tracing) is told of
    each run's segments with the time the pass took; without it no clock is
    read."""

    def __init__(self, allow_unknown: bool = False, *,
                 value_format: ValueFormat | None = None,
                 on_validated: OnValidated | None = None) -> None:
        self._allow_unknown = allow_unknown
        self._format = value_format
        self._on_validated = on_validated

    async def __call__(self, run: RunContext, call_next: NextRun) -> None:
        records = run.records
        fmt = self._format
        if fmt is not None:
            await prepare_until_ready(fmt, [r.value for r in records])
        if self._on_validated is None:
            segments = validate_run(records, allow_unknown=self._allow_unknown,
                                    value_format=fmt)
        else:
            started = time.time_ns()
            segments = validate_run(records, allow_unknown=self._allow_unknown,
                                    value_format=fmt)
            self._on_validated(segments, started, time.time_ns(), len(records))
        if len(segments) == 1 and segments[0].error is None:
            run.events = segments[0].events
            await call_next(run)
            return
        for segment in segments:
            await call_next(run.part(segment.records, segment.events, segment.error))
