"""`consumer dlq inspect|replay`."""

from __future__ import annotations

import typer

app = typer.Typer(help="Dead-letter topic: inspect and replay.", no_args_is_help=True)
