"""`consumer dlq inspect|replay`: read the dead-letter topic, show it as a
table, send (some of) it back with a progress bar."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Annotated

import typer
from aiokafka.errors import KafkaError

from consumer.commands.connect import Target, check_or_exit, kafka_target
from consumer.gates.dlq_tools import (
    DeadLetter,
    DroppedRecords,
    Selection,
    read_dead_letters,
    replay,
)

app = typer.Typer(help="Dead-letter topic: inspect and replay.", no_args_is_help=True)

BootstrapOpt = Annotated[str | None, typer.Option(
    "--bootstrap-servers", help="Kafka bootstrap servers (default: CONSUMER_BOOTSTRAP_SERVERS "
    "or localhost:9092).")]
TopicOpt = Annotated[str | None, typer.Option(
    "--topic", help="Dead-letter topic (default: the settings' CONSUMER_DLQ_TOPIC, "
    "else <first topic>.dlq).")]
ErrorTypeOpt = Annotated[list[str] | None, typer.Option(
    "--error-type", help="Only this error type (dlq.error.type); repeatable.")]
SinceOpt = Annotated[str | None, typer.Option(
    "--since", help="Dead-lettered at or after this time (ISO 8601; UTC if no zone).")]
UntilOpt = Annotated[str | None, typer.Option(
    "--until", help="Dead-lettered at or before this time (ISO 8601; UTC if no zone).")]
FromOffsetOpt = Annotated[int | None, typer.Option(
    "--from-offset", help="Dead-letter topic offsets from this one (inclusive).")]
ToOffsetOpt = Annotated[int | None, typer.Option(
    "--to-offset", help="Dead-letter topic offsets up to this one (inclusive).")]
PartitionOpt = Annotated[int | None, typer.Option(
    "--partition", help="Only this partition of the dead-letter topic.")]
LimitOpt = Annotated[int | None, typer.Option("--limit", min=1,
                                              help="At most this many records.")]


def _defaults(bootstrap: str | None, topic: str | None) -> tuple[Target, str]:
    """The broker (checked: exit 1 with one line if it refuses us) and the topic."""
    target = kafka_target(bootstrap)
    check_or_exit(target)
    return target, topic or target.settings.dead_letter_topic


def _time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"not an ISO 8601 time: {value!r}", param_hint=option) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _selection(*, error_type: list[str] | None, since: str | None, until: str | None,
               from_offset: int | None, to_offset: int | None,
               partition: int | None) -> Selection:
    return Selection(frozenset(error_type or ()), _time(since, "--since"),
                     _time(until, "--until"), from_offset, to_offset, partition)


async def _collect(target: Target, topic: str, selection: Selection,
                   limit: int | None) -> tuple[list[DeadLetter], int]:
    found: list[DeadLetter] = []
    scanned = 0
    # aclosing: stopping early (--limit) must stop the consumer now, not at GC.
    letters = read_dead_letters(target.bootstrap, topic, security=target.security)
    async with contextlib.aclosing(letters):
        async for dl in letters:
            scanned += 1
            if selection.matches(dl):
                found.append(dl)
                if limit is not None and len(found) >= limit:
                    break
    return found, scanned


def _read(target: Target, topic: str, selection: Selection,
          limit: int | None) -> tuple[list[DeadLetter], int]:
    try:
        return asyncio.run(_collect(target, topic, selection, limit))
    except LookupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except (TimeoutError, OSError, KafkaError) as exc:
        typer.echo(f"error: cannot read {topic} from {target.bootstrap}: {exc!r}", err=True)
        raise typer.Exit(1) from None


@app.command()
def inspect(  # noqa: PLR0917 - typer maps each option to a parameter
    bootstrap_servers: BootstrapOpt = None, topic: TopicOpt = None,
    error_type: ErrorTypeOpt = None, since: SinceOpt = None, until: UntilOpt = None,
    from_offset: FromOffsetOpt = None, to_offset: ToOffsetOpt = None,
    partition: PartitionOpt = None, limit: LimitOpt = None,
) -> None:
    """Show dead-lettered records: offset, time, error, original coordinates,
    and the registry schema id of a wire-format value."""
    from rich.console import Console
    from rich.table import Table

    target, dlq_topic = _defaults(bootstrap_servers, topic)
    selection = _selection(error_type=error_type, since=since, until=until,
                           from_offset=from_offset, to_offset=to_offset, partition=partition)
    found, scanned = _read(target, dlq_topic, selection, limit)
    table = Table(title=f"{dlq_topic}: {len(found)} of {scanned} records", expand=False)
    for name in ("partition", "offset", "dead-lettered at", "error type", "error message",
                 "original", "attempts", "replays", "schema id"):
        table.add_column(name, overflow="fold")
    for dl in found:
        original = (f"{dl.original_topic}[{dl.original_partition}]@{dl.original_offset}"
                    if dl.original_topic else "?")
        message = dl.error_message
        table.add_row(str(dl.partition), str(dl.offset),
                      dl.time.isoformat(timespec="seconds"), dl.error_type,
                      message if len(message) <= 120 else message[:117] + "...", original,
                      str(dl.attempts if dl.attempts is not None else "?"),
                      str(dl.replay_count), dl.schema_id or "")
    Console(width=max(160, Console().width)).print(table)


@app.command("replay")
def replay_command(  # noqa: PLR0917 - typer maps each option to a parameter
    bootstrap_servers: BootstrapOpt = None, topic: TopicOpt = None,
    to: Annotated[str | None, typer.Option(
        "--to", help="Send here instead of each record's original topic.")] = None,
    error_type: ErrorTypeOpt = None, since: SinceOpt = None, until: UntilOpt = None,
    from_offset: FromOffsetOpt = None, to_offset: ToOffsetOpt = None,
    partition: PartitionOpt = None, limit: LimitOpt = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Count what would be replayed; send nothing.")] = False,
    skip_dropped: Annotated[bool, typer.Option(
        "--skip-dropped", help="Skip dead letters whose value or key was left out "
        "(dlq.value.dropped, dlq.key.dropped) and replay the others; without it, "
        "such records stop the replay before anything is sent.")] = False,
) -> None:
    """Send dead-lettered records back (key and value kept, dlq.replay.count + 1)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    target, dlq_topic = _defaults(bootstrap_servers, topic)
    selection = _selection(error_type=error_type, since=since, until=until,
                           from_offset=from_offset, to_offset=to_offset, partition=partition)
    found, scanned = _read(target, dlq_topic, selection, limit)
    console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=console, transient=False) as bar:
        task = bar.add_task("checking" if dry_run else "replaying", total=len(found))
        try:
            result = asyncio.run(replay(target.bootstrap, found, to=to, dry_run=dry_run,
                                        security=target.security, skip_dropped=skip_dropped,
                                        progress=lambda n: bar.advance(task, n)))
        except DroppedRecords as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        except (TimeoutError, OSError, KafkaError) as exc:
            typer.echo(f"error: replay failed: {exc!r}", err=True)
            raise typer.Exit(1) from None
    verb = "would replay" if dry_run else "replayed"
    targets = ", ".join(f"{n} to {t}" for t, n in sorted(result.sent.items())) or "nothing"
    typer.echo(f"scanned {scanned}, matched {len(found)}, {verb} {result.total} ({targets}), "
               f"skipped {result.skipped} without an original topic"
               + (f", skipped {result.dropped} with a dropped value or key"
                  if skip_dropped else ""))
    if result.skipped and not to:
        raise typer.Exit(1)

