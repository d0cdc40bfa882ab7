"""`consumer schemas export|check`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Event schemas: JSON Schema export and compatibility check.",
                  no_args_is_help=True)

DirOption = Annotated[
    Path | None,
    typer.Option("--dir", help="Schema directory (default: the package's schemas/json)."),
]


@app.command("export")
def export_(directory: DirOption = None) -> None:
    """Write one JSON Schema per (type, version) and the envelope; drop stale files."""
    from schemas import REGISTRY, export

    target = directory or export.SCHEMA_DIR
    written, removed = export.write(REGISTRY, target)
    for path in written:
        typer.echo(f"wrote {path}")
    for path in removed:
        typer.echo(f"removed {path}")
    typer.echo(f"{len(export.documents(REGISTRY))} schemas in {target} "
               f"({len(written)} written, {len(removed)} removed)")


@app.command("check")
def check(directory: DirOption = None) -> None:
    """Fail (exit 1) when the models break backward compatibility with the
    committed schemas; each line names the rule and the field."""
    from schemas import REGISTRY, compat, export

    source = directory or export.SCHEMA_DIR
    try:
        committed = export.load(source)
    except (OSError, ValueError) as exc:
        typer.echo(f"cannot read committed schemas in {source}: {exc}", err=True)
        raise typer.Exit(2) from None
    current = export.documents(REGISTRY)
    violations = compat.check(committed, current)
    for violation in violations:
        typer.echo(str(violation), err=True)
    if violations:
        typer.echo(f"{len(violations)} backward-incompatible change(s)", err=True)
        raise typer.Exit(1)
    added = sorted(current.keys() - committed.keys())
    changed = sorted(n for n in committed.keys() & current.keys() if committed[n] != current[n])
    if added or changed:
        typer.echo("compatible changes not exported yet (run `consumer schemas export`): "
                   + ", ".join(added + changed))
    typer.echo(f"ok: {len(current)} schemas backward compatible with {source}")
