"""`consumer schemas export|check`."""

from __future__ import annotations

import typer

app = typer.Typer(help="Event schemas: JSON Schema export and compatibility check.",
                  no_args_is_help=True)
