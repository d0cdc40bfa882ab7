"""`consumer produce`: send sample or NDJSON events to a topic."""

from __future__ import annotations

import typer


def produce() -> None:
    """Produce events (not implemented yet)."""
    typer.echo("consumer produce is not implemented yet", err=True)
    raise typer.Exit(1)
