"""`python -m devtools …`: a local broker for development, and the `make run` demo."""

from __future__ import annotations

import json
import shutil
from typing import Annotated

import typer

from devtools import kafka as local

app = typer.Typer(name="devtools",
                  help="Development helpers (a source checkout's): a local Kafka broker, "
                       "the demo.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
kafka_app = typer.Typer(help="A local single-node Kafka (KRaft) from Maven jars.",
                        no_args_is_help=True)
app.add_typer(kafka_app, name="kafka")


@kafka_app.command("jars")
def jars() -> None:
    """Resolve the broker and admin-tool jars into the cache (no-op when cached)."""
    typer.echo(f"kafka jars: {local.ensure_jars()}")
    typer.echo(f"kafka tools: {local.ensure_tools()}")


@kafka_app.command("up")
def up(
    port: Annotated[int, typer.Option(help="PLAINTEXT port on 127.0.0.1.")] = 9092,
) -> None:
    """Start a broker in the background (kept until `down`); print its address."""
    bootstrap = local.running_bootstrap()
    if bootstrap:
        typer.echo(bootstrap)
        return
    state = local.background_state()
    data = state.parent / "data"
    broker = local.LocalKafka(port=port, data_dir=data)
    bootstrap = broker.start(detach=True)
    state.write_text(json.dumps({"pid": broker.pid, "bootstrap": bootstrap, "port": port}))
    typer.echo(bootstrap)


@kafka_app.command("down")
def down() -> None:
    """Stop the background broker and remove its data."""
    state = local.background_state()
    if not state.exists():
        typer.echo("no local broker running")
        return
    info = json.loads(state.read_text())
    local.stop_process(int(info["pid"]), grace=15.0)
    shutil.rmtree(state.parent, ignore_errors=True)
    typer.echo("local broker stopped")


@app.command("demo")
def demo() -> None:
    """`make run`: a local broker (unless CONSUMER_BOOTSTRAP_SERVERS is set),
    then the service on embedded defaults."""
    from devtools.demo import run_demo

    raise typer.Exit(run_demo())
