"""`consumer run`: the service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from consumer.config import load_settings
from consumer.errors import ConfigError


def run(
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML settings file; env vars win.")
    ] = None,
) -> None:
    """Run the service until SIGTERM/SIGINT; settings from CONSUMER_* variables."""
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    from consumer.service import main

    try:
        code = main(settings)
    except ConfigError as exc:  # a handler, middleware or sink that cannot be built
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)
