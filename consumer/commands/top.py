"""`consumer top`: a live view of running instances, read from their
/metrics, /healthz and /readyz — rates, in-flight work, pauses, lag, and why
an instance is not ready. `q` (or Ctrl-C) quits; `--once` prints one
plain-text snapshot and exits."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Annotated

import typer

from consumer.top.model import REASONS_WINDOW, InstanceView, Scrape, view, window_start
from consumer.top.poll import Poll, Poller

#: Lines the live screen needs besides the partition table's rows.
CHROME = 10


def views(polls: Sequence[Poll], history: dict[str, list[Scrape]]) -> list[InstanceView]:
    """Views of this round; `history` (each instance's scrapes of the last
    `REASONS_WINDOW` seconds, oldest first) is updated in place. An instance
    that failed starts over: its next rates wait for two scrapes."""
    out = []
    for p in polls:
        past = history.get(p.url, [])
        if p.scrape is None:
            out.append(view(p.url, p.health, p.ready, None, error=p.error))
            history.pop(p.url, None)
            continue
        out.append(view(p.url, p.health, p.ready, p.scrape, prev=past[-1] if past else None,
                        window=window_start(past, p.scrape.at), error=p.error))
        history[p.url] = [s for s in past if p.scrape.at - s.at <= REASONS_WINDOW]
        history[p.url].append(p.scrape)
    return out


async def _once(targets: list[str], interval: float, poller: Poller) -> list[InstanceView]:
    """Two rounds `interval` apart: rates need two scrapes."""
    previous: dict[str, list[Scrape]] = {}
    async with poller:
        began = time.monotonic()
        views(await poller.poll_all(targets), previous)
        await asyncio.sleep(max(0.0, interval - (time.monotonic() - began)))
        return views(await poller.poll_all(targets), previous)


async def _live(targets: list[str], interval: float, poller: Poller,
                partition_rows: int | None) -> None:
    from rich.console import Console
    from rich.live import Live

    from consumer.top.keys import cbreak, quit_on_key
    from consumer.top.render import screen

    console = Console()  # honours NO_COLOR, TERM=dumb and COLUMNS/LINES
    quit_event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, quit_event.set)
    previous: dict[str, list[Scrape]] = {}
    try:
        with (cbreak(sys.stdin) as fd, quit_on_key(fd, quit_event),
              Live(console=console, screen=True, auto_refresh=False) as live):
            async with poller:
                while not quit_event.is_set():
                    began = loop.time()
                    shown = views(await poller.poll_all(targets), previous)
                    rows = partition_rows if partition_rows is not None else \
                        console.height - CHROME - len(targets)
                    header = (f"consumer top · {len(targets)} instance(s) · every "
                              f"{interval:g} s · {time.strftime('%H:%M:%S')} · q quits")
                    live.update(screen(shown, header=header, partition_rows=rows),
                                refresh=True)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(quit_event.wait(),
                                               max(0.0, interval - (loop.time() - began)))
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _default_target() -> str:
    return f"http://127.0.0.1:{os.environ.get('CONSUMER_HTTP_PORT') or 8080}"


def top(
    targets: Annotated[list[str] | None, typer.Argument(
        help="Instances: host:port or their URL (default: http://127.0.0.1 and "
             "CONSUMER_HTTP_PORT, else 8080).", show_default=False)] = None,
    interval: Annotated[float, typer.Option(
        "--interval", min=0.1, help="Seconds between scrapes; rates are over this.")] = 1.0,
    timeout: Annotated[float, typer.Option(
        "--timeout", min=0.1, help="Seconds to wait for each answer.")] = 2.0,
    once: Annotated[bool, typer.Option(
        "--once", help="Scrape twice, --interval apart, print one plain-text snapshot "
        "and exit (1 if an instance did not answer).")] = False,
    partitions: Annotated[int | None, typer.Option(
        "--partitions", min=0, help="Partitions listed, furthest behind first (default: "
        "what fits the terminal; all with --once).")] = None,
) -> None:
    """Watch running instances: messages/s, in flight, paused, lag, readiness."""
    chosen = targets or [_default_target()]
    if not once:
        asyncio.run(_live(chosen, interval, Poller(timeout), partitions))
        return
    from rich.console import Console

    from consumer.top.render import screen

    shown = asyncio.run(_once(chosen, interval, Poller(timeout)))
    rows = partitions if partitions is not None else sum(len(v.partitions) for v in shown)
    # Wide enough for every column: a snapshot is read in a file or a bug report.
    plain = Console(color_system=None, force_terminal=False, highlight=False, width=400)
    with plain.capture() as captured:
        plain.print(screen(shown, header=f"consumer top · rates over {interval:g} s · "
                           f"{time.strftime('%Y-%m-%d %H:%M:%S')}", partition_rows=rows,
                           with_totals=True))
    typer.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))
    if any(v.error is not None for v in shown):
        raise typer.Exit(1)
