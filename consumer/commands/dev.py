"""`consumer dev …`: a local broker for development, and the `make run` demo."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from consumer.dev import kafka as local

app = typer.Typer(help="Development helpers: a local Kafka broker, the demo.",
                  no_args_is_help=True)
kafka_app = typer.Typer(help="A local single-node Kafka (KRaft) from Maven jars.",
                        no_args_is_help=True)
app.add_typer(kafka_app, name="kafka")


def _state_file() -> Path:
    return local.cache_dir() / "kafka" / "run" / "state.json"


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
    bootstrap = running_bootstrap()
    if bootstrap:
        typer.echo(bootstrap)
        return
    state = _state_file()
    data = state.parent / "data"
    broker = local.LocalKafka(port=port, data_dir=data)
    bootstrap = broker.start(detach=True)
    state.write_text(json.dumps({"pid": broker.pid, "bootstrap": bootstrap, "port": port}))
    typer.echo(bootstrap)


@kafka_app.command("down")
def down() -> None:
    """Stop the background broker and remove its data."""
    state = _state_file()
    if not state.exists():
        typer.echo("no local broker running")
        return
    info = json.loads(state.read_text())
    local.stop_process(int(info["pid"]), grace=15.0)
    import shutil

    shutil.rmtree(state.parent, ignore_errors=True)
    typer.echo("local broker stopped")


def running_bootstrap() -> str | None:
    """The address of a broker started by `up` that is still alive, if any."""
    state = _state_file()
    if not state.exists():
        return None
    info = json.loads(state.read_text())
    try:
        os.kill(int(info["pid"]), 0)
    except ProcessLookupError:
        state.unlink()
        return None
    return str(info["bootstrap"])


@app.command("demo")
def demo() -> None:
    """`make run`: a local broker (unless CONSUMER_BOOTSTRAP_SERVERS is set),
    then the service on embedded defaults."""
    from consumer.dev.demo import run_demo

    raise typer.Exit(run_demo())
