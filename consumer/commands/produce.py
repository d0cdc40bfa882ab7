"""`consumer produce`: send sample or NDJSON events to a topic.

Samples: `--count` valid events of the shipped types (or `--type`), unique
ids, keyed by order id. NDJSON (`--from FILE` or `--from -`): every line is
validated first; if any is invalid, the command lists them by line number and
sends nothing, unless `--allow-invalid` (then invalid lines go out as they are,
unkeyed — handy for exercising the dead-letter path).

`--format avro|json_schema` registers the shipped schemas of the events with
the Schema Registry (`--schema-registry-url`, or CONSUMER_SCHEMA_REGISTRY_URL
with its user and password settings) and writes the Confluent wire format.
"""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from consumer.commands.connect import Target, check_or_exit, kafka_target
from consumer.config import Tracing as TracingKind
from consumer.errors import ConfigError
from consumer.observability.tracing import start_tracing
from consumer.produce import KeyValue, ProduceError, ProduceSummary, produce_events

if TYPE_CHECKING:
    from consumer.formats.encode import Encoder
    from consumer.observability.otel import Tracing


class WriteFormat(StrEnum):
    JSON = "json"
    AVRO = "avro"
    JSON_SCHEMA = "json_schema"


@dataclass(slots=True)
class _Lines:
    records: list[KeyValue] = field(default_factory=list)
    invalid: list[tuple[int, str, str]] = field(default_factory=list)  # line, reason, detail


def _read_ndjson(source: str, *, allow_unknown: bool, allow_invalid: bool) -> _Lines:
    from schemas import InvalidEvent, validate

    data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    out = _Lines()
    for lineno, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue  # blank lines separate nothing in NDJSON; skip them quietly
        try:
            event = validate(line, allow_unknown=allow_unknown)
        except InvalidEvent as exc:
            out.invalid.append((lineno, exc.reason, exc.detail))
            if allow_invalid:
                out.records.append((None, line))
            continue
        out.records.append((event.key().encode(), line))
    return out


def _samples(count: int, type_: str | None, seed: int | None) -> Iterator[KeyValue]:
    from schemas.samples import sample_bytes

    rng = random.Random(seed)
    for i in range(count):
        yield sample_bytes(i, type=type_, rng=rng)


def _encoded(records: Iterator[KeyValue] | list[KeyValue], encode: Encoder,
             ) -> Iterator[KeyValue]:
    """Each valid value as the wire format; invalid ones (--allow-invalid) as they are."""
    from schemas import InvalidEvent, validate

    for key, value in records:
        try:
            event = validate(value, allow_unknown=False)
        except InvalidEvent:
            yield key, value
            continue
        yield key, encode(event)


def _encoder(target: Target, topic: str, value_format: str, url: str) -> Encoder:
    """Register the shipped schemas; exit 1 when the registry cannot answer."""
    from consumer.errors import RegistryError
    from consumer.formats.client import RegistryClient
    from consumer.formats.encode import registered_encoder

    settings = target.settings
    password = settings.schema_registry_password

    async def register() -> Encoder:
        async with RegistryClient(
                url, user=settings.schema_registry_user,
                password=None if password is None else password.get_secret_value(),
                ca=settings.schema_registry_ca,
                timeout=settings.schema_registry_timeout) as client:
            return await registered_encoder(client, topic, value_format)

    try:
        return asyncio.run(register())
    except RegistryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _run(target: Target, topic: str, records: Iterator[KeyValue] | list[KeyValue], total: int,
         rate: float | None, *, tracing: Tracing | None) -> ProduceSummary:
    bootstrap, security = target.bootstrap, target.security
    compression = target.settings.producer_compression
    try:
        if not sys.stdout.isatty():
            return asyncio.run(produce_events(bootstrap, topic, records, rate=rate,
                                              security=security, tracing=tracing,
                                              compression=compression))
        from rich.progress import Progress as Bar

        with Bar(transient=True) as bar:
            task = bar.add_task(f"producing to {topic}", total=total)

            def advance(n: int) -> None:
                bar.advance(task, n)

            return asyncio.run(produce_events(bootstrap, topic, records, rate=rate,
                                              progress=advance, security=security,
                                              tracing=tracing, compression=compression))
    finally:
        if tracing is not None:
            tracing.shutdown()  # export the send spans before exiting


def produce(
    *,
    topic: Annotated[str, typer.Option("--topic", "-t", help="Topic to produce to.")],
    count: Annotated[int | None, typer.Option(
        "--count", "-n", min=0,
        help="Number of sample events (default 10); with --from, the most lines to send.",
    )] = None,
    rate: Annotated[float | None, typer.Option(
        "--rate", min=0.001, help="Messages per second (default: as fast as possible).",
    )] = None,
    type_: Annotated[str | None, typer.Option(
        "--type", help="Only this sample type (order.created, order.paid, order.cancelled).",
    )] = None,
    from_: Annotated[str | None, typer.Option(
        "--from", metavar="FILE|-", help="Send NDJSON events from a file or stdin instead.",
    )] = None,
    allow_invalid: Annotated[bool, typer.Option(
        "--allow-invalid", help="Send invalid NDJSON lines too (unkeyed).",
    )] = False,
    allow_unknown: Annotated[bool, typer.Option(
        "--allow-unknown", help="Accept unknown event types/versions in NDJSON input.",
    )] = False,
    seed: Annotated[int | None, typer.Option(
        "--seed", help="Seed for sample data (ids stay unique).",
    )] = None,
    bootstrap: Annotated[str | None, typer.Option(
        "--bootstrap-servers", help="Kafka bootstrap servers (default: "
        "CONSUMER_BOOTSTRAP_SERVERS or localhost:9092).",
    )] = None,
    value_format: Annotated[WriteFormat, typer.Option(
        "--format", help="json: the envelope as JSON; avro or json_schema: registered with "
        "the Schema Registry, in Confluent's wire format.",
    )] = WriteFormat.JSON,
    registry_url: Annotated[str | None, typer.Option(
        "--schema-registry-url", help="Schema Registry API base URL (default: "
        "CONSUMER_SCHEMA_REGISTRY_URL).",
    )] = None,
    tracing_kind: Annotated[TracingKind, typer.Option(
        "--tracing", envvar="CONSUMER_TRACING",
        help="otlp: a send span per event, its traceparent in the record's headers "
             "(OTEL_* variables as for `consumer run`).",
    )] = TracingKind.NONE,
) -> None:
    """Produce sample or NDJSON events to a topic (validated before sending).
    Security (TLS, SASL) comes from the same CONSUMER_* settings as the service."""
    target = kafka_target(bootstrap)
    records: Iterator[KeyValue] | list[KeyValue]
    invalid = 0
    if from_ is not None:
        try:
            lines = _read_ndjson(from_, allow_unknown=allow_unknown, allow_invalid=allow_invalid)
        except OSError as exc:
            typer.echo(f"--from {from_}: {exc}", err=True)
            raise typer.Exit(2) from None
        for lineno, reason, detail in lines.invalid:
            typer.echo(f"line {lineno}: {reason}: {detail}", err=True)
        invalid = len(lines.invalid)
        if invalid and not allow_invalid:
            typer.echo(f"{invalid} invalid line(s); nothing sent (use --allow-invalid to send "
                       "them anyway)", err=True)
            raise typer.Exit(1)
        records = lines.records[:count] if count is not None else lines.records
        total = len(records)
    else:
        from schemas.samples import SAMPLE_TYPES

        if type_ is not None and type_ not in SAMPLE_TYPES:
            typer.echo(f"--type: expected one of {', '.join(SAMPLE_TYPES)}", err=True)
            raise typer.Exit(2)
        total = 10 if count is None else count
        records = _samples(total, type_, seed)
    registry_url = registry_url or target.settings.schema_registry_url
    if value_format is not WriteFormat.JSON and not registry_url:
        typer.echo(f"--format {value_format.value} needs --schema-registry-url (or "
                   "CONSUMER_SCHEMA_REGISTRY_URL)", err=True)
        raise typer.Exit(2)
    check_or_exit(target)
    if value_format is not WriteFormat.JSON:
        assert registry_url is not None
        encode = _encoder(target, topic, value_format.value, registry_url)
        records = _encoded(records, encode)
    try:
        tracing = start_tracing(tracing_kind)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    try:
        summary = _run(target, topic, records, total, rate, tracing=tracing)
    except ProduceError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    suffix = f", {invalid} invalid line(s) sent as-is" if invalid else ""
    typer.echo(summary.line() + suffix)
    if summary.failed:
        raise typer.Exit(1)
