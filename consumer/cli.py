"""The `consumer` console script. Each command group lives in its own module
under `consumer.commands`; this file only assembles them."""

from __future__ import annotations

import typer

from consumer.commands import dlq, produce, run, schemas, top

app = typer.Typer(
    name="consumer",
    help="Kafka consumer service: validate, batch, store, retry, dead-letter.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("run")(run.run)
app.command("produce")(produce.produce)
app.add_typer(schemas.app, name="schemas")
app.add_typer(dlq.app, name="dlq")
app.command("top")(top.top)


@app.command("dev", hidden=True, add_help_option=False,
             context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def dev() -> None:
    """Moved: the development helpers are not part of the installed package."""
    typer.echo("`consumer dev` moved to `python -m devtools` (kafka jars|up|down, demo), "
               "run from a source checkout; `make run` starts the demo.", err=True)
    raise typer.Exit(2)


if __name__ == "__main__":  # pragma: no cover
    app()
