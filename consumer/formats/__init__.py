"""Record value formats beyond plain JSON: the Confluent Schema Registry's
wire format (Avro, JSON Schema; `auto` tells them from plain JSON by the
first byte). Protobuf is refused at start (see the README).

The pipeline meets a format through `ValueFormat` only, in the validation
gate (`consumer.gates.validation`): `await prepare_until_ready(fmt,
values)` — every writer schema the values need, fetched, retried with
backoff while the registry cannot answer (the records stay in flight) —
then `fmt.decode(value)` per value, which returns the validated event or
raises `InvalidEvent`. With `CONSUMER_VALUE_FORMAT=json` no format is built
and the pipeline validates as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from consumer.backoff import Backoff
from consumer.config import Settings
from consumer.config import ValueFormat as FormatName
from consumer.errors import ConsumerError
from consumer.formats.client import RegistryClient
from consumer.formats.registry import RegistryFormat
from consumer.types import Undecodable
from schemas import Event, InvalidEvent

if TYPE_CHECKING:
    from consumer.observability.metrics import Metrics

__all__ = ["RegistryFormat", "ValueFormat", "build_value_format", "decode_all",
           "prepare_until_ready"]

#: Waits between tries while the registry cannot answer (forever: its
#: records stay in flight and the engine's in-flight limit pauses partitions).
BACKOFF = Backoff(0.1, 5.0)


class ValueFormat(Protocol):
    async def start(self) -> None:
        """Open the client and check the registry answers and lets us in:
        raises `RegistryError` (one line) otherwise."""

    async def prepare(self, values: Sequence[bytes | Undecodable | None]) -> None:
        """Fetch every writer schema these values need that is not cached (one
        request per id even when called concurrently). Raises a ConsumerError
        with retriable=True when the registry cannot answer; an id the
        registry does not know is not an error here (it is remembered as
        unknown for a while)."""

    def decode(self, value: bytes | Undecodable | None) -> Event:
        """The validated event, or `InvalidEvent` with the reason (and the
        schema id). Only after `prepare` of the same value."""

    def unready(self) -> list[str]:
        """Readiness reasons, [] when fine."""

    async def close(self) -> None: ...


def build_value_format(settings: Settings, metrics: Metrics | None = None
                       ) -> RegistryFormat | None:
    """The format `settings` name, built (not started: no I/O); None for json."""
    if settings.value_format is FormatName.JSON:
        return None
    assert settings.schema_registry_url is not None  # Settings checked it
    password = settings.schema_registry_password
    requests = None if metrics is None else metrics.schema_registry_requests
    client = RegistryClient(
        settings.schema_registry_url, user=settings.schema_registry_user,
        password=None if password is None else password.get_secret_value(),
        ca=settings.schema_registry_ca, timeout=settings.schema_registry_timeout,
        on_request=None if requests is None else (lambda kind: requests.labels(kind).inc()))
    # Room for the schema of every record in flight (see SchemaCache).
    return RegistryFormat(client, value_format=settings.value_format.value,
                          allow_unknown=settings.allow_unknown_types,
                          capacity=settings.max_in_flight + 1024, metrics=metrics)


async def prepare_until_ready(fmt: ValueFormat, values: Sequence[bytes | Undecodable | None],
                              backoff: Backoff = BACKOFF) -> None:
    """`fmt.prepare(values)`, tried again with capped, jittered backoff for
    as long as the registry cannot answer; returns once it did. Ends early
    only by cancellation (the worker stopping: its records stay in flight)."""
    attempt = 0
    while True:
        try:
            await fmt.prepare(values)
        except ConsumerError as exc:
            if not exc.retriable:
                raise
            attempt += 1
            await asyncio.sleep(backoff.delay(attempt))
        else:
            return


def decode_all(fmt: ValueFormat, values: Sequence[bytes | Undecodable | None]
               ) -> list[Event | InvalidEvent]:
    """`fmt.decode` over prepared values: per value the event or its
    `InvalidEvent` (returned, not raised), as `schemas.validate_many` does."""
    out: list[Event | InvalidEvent] = []
    decode = fmt.decode
    for value in values:
        try:
            out.append(decode(value))
        except InvalidEvent as exc:
            out.append(exc)
    return out
