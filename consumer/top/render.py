"""Rich renderables for `consumer top`: one table of instances, the reasons
of those not ready or unreachable, and the partitions furthest behind. The
same renderable is drawn live and, for `--once`, printed once as plain text."""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from consumer.top.model import REASONS_WINDOW, InstanceView, Probe, busiest


def number(value: float | None, unit: str = "") -> str:
    """Compact: 950, 12.3k, 4.5M; '-' when unknown."""
    if value is None:
        return "-"
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.1f}".removesuffix(".0") + suffix + unit
    return f"{value:.0f}{unit}" if value == int(value) else f"{value:.1f}{unit}"


def size(value: float | None) -> str:
    if value is None:
        return "-"
    for scale, suffix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if value >= scale:
            return f"{value / scale:.1f} {suffix}"
    return f"{value:.0f} B"


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0 s"
    if value < 1:
        return f"{value * 1000:.0f} ms" if value >= 0.001 else f"{value * 1e6:.0f} µs"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def probe_text(probe: Probe) -> str:
    """One line: the error, or the status and the reasons the body lists
    (else its first line)."""
    if probe.error is not None:
        return probe.error
    if probe.reasons:
        return f"HTTP {probe.status} " + "; ".join(probe.reasons)
    line = probe.body.splitlines()[0] if probe.body else ""
    return f"HTTP {probe.status} {line}".strip()


def state(view: InstanceView) -> Text:
    if view.error is not None:
        return Text("unreachable" if view.health.status is None else "no metrics",
                    style="bold red")
    if view.breaker_open:
        return Text("breaker open", style="bold red")
    if not view.health.ok:
        return Text("unhealthy", style="bold red")
    if view.ready.draining:
        return Text("draining", style="yellow")
    if not view.ready.ok:
        return Text("not ready", style="yellow")
    return Text("ready", style="green")


def paused(value: bool | None) -> Text:
    if value is None:
        return Text("-")
    return Text("paused", style="yellow") if value else Text("no")


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


COLUMNS = ("instance", "state", "done/s", "ok", "dlq", "invalid", "dlq %", "fetched/s", "p99",
           "loop p99", "in flight", "bytes", "paused", "lag", "time lag", "commit/s",
           "retry/s", "rows/s", "flush p99", "sink err/s")


def instances(views: Sequence[InstanceView]) -> Table:
    # One space between columns (the box's); on a terminal too narrow for all the
    # columns the numbers are cut (…), never an instance's address or its state.
    table = Table(box=box.SIMPLE_HEAD, expand=False, pad_edge=False, padding=0)
    widest = max((len(v.url) for v in views), default=0)
    for name in COLUMNS:
        table.add_column(name, justify="left" if name in {"instance", "state"} else "right",
                         no_wrap=True, min_width={"instance": widest, "state": 12}.get(name))
    for v in views:
        r = v.rates
        measured = ["-"] * 7 if r is None else [
            number(r.done), number(r.outcomes["ok"]), number(r.outcomes["dead_lettered"]),
            number(r.outcomes["invalid"]), percent(r.dead_letter_ratio), number(r.fetched),
            seconds(r.p99_processing)]
        flows = ["-"] * 5 if r is None else [
            number(r.committed), number(r.retries), number(r.rows_written),
            seconds(r.p99_flush),
            Text(number(r.sink_errors), style="red" if r.sink_errors else "")]
        table.add_row(
            v.url, state(v), *measured, seconds(r.p99_loop_lag) if r else "-",
            f"{number(v.in_flight)}/{number(v.in_flight_limit)}",
            f"{size(v.in_flight_bytes)}/{size(v.in_flight_bytes_limit)}",
            f"{number(v.paused)}/{number(v.assigned)}", number(v.lag),
            seconds(v.max_lag_seconds), *flows)
    return table


def reasons(views: Sequence[InstanceView]) -> list[Text]:
    """Dead-letter reasons of the last minute (or the time top has watched,
    when shorter: `--once`'s interval), per instance that had any."""
    return [Text(f"{v.url} dead letters, {over(v.reasons_over)}: " + ", ".join(
                f"{reason} {n:.0f}" for reason, n in sorted(
                    v.dead_letter_reasons.items(), key=lambda item: -item[1])),
                 style="yellow")
            for v in views if v.dead_letter_reasons]


def totals(views: Sequence[InstanceView]) -> list[Text]:
    """What each instance counted since it started (exact, not compacted)."""
    return [Text(f"{v.url} since start: " + ", ".join(
                f"{name.replace('_', '-')} {n:.0f}" for name, n in v.totals.items()))
            for v in views if v.totals is not None]


def over(window: float | None) -> str:
    if window is None or window >= REASONS_WINDOW - 1:
        return "last minute"
    return f"last {seconds(window)}"


def problems(views: Sequence[InstanceView]) -> list[Text]:
    """Why each instance that is not plainly ready is so: in the body's words."""
    lines: list[Text] = []
    for v in views:
        if v.error is not None:
            lines.append(Text(f"{v.url}: {v.error}", style="red"))
        for name, probe in (("healthz", v.health), ("readyz", v.ready)):
            if not probe.ok and not (v.error and probe.status is None):
                lines.append(Text(f"{v.url} /{name}: {probe_text(probe)}", style="yellow"))
        if v.rates is not None and (v.rates.commit_failures or v.rates.dlq_send_failures):
            lines.append(Text(f"{v.url}: commit failures {number(v.rates.commit_failures)}/s, "
                              f"dead-letter send failures {number(v.rates.dlq_send_failures)}/s",
                              style="red"))
    return lines


def lagging(views: Sequence[InstanceView], limit: int) -> Table:
    table = Table(box=box.SIMPLE_HEAD, expand=False, pad_edge=False,
                  title="partitions furthest behind", title_justify="left")
    for name, justify in (("instance", "left"), ("topic", "left"), ("partition", "right"),
                          ("lag", "right"), ("time lag", "right"), ("committed", "right"),
                          ("paused", "left"), ("in flight", "right"),
                          ("last commit", "right")):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for row in busiest(views, limit):
        table.add_row(row.instance, row.topic, str(row.partition), number(row.lag),
                      seconds(row.lag_seconds),
                      "-" if row.committed is None else f"{row.committed:.0f}",
                      paused(row.paused), number(row.in_flight),
                      "-" if row.last_commit_age is None
                      else f"{seconds(row.last_commit_age)} ago")
    return table


def screen(views: Sequence[InstanceView], *, header: str, partition_rows: int,
           with_totals: bool = False) -> Group:
    """The whole view. `partition_rows`: how many partitions fit below;
    `with_totals`: a line per instance with its counts since it started."""
    parts: list[RenderableType] = [Text(header, style="bold"), instances(views)]
    if with_totals:
        parts.extend(totals(views))
    parts.extend(problems(views))
    parts.extend(reasons(views))
    if any(v.partitions for v in views) and partition_rows > 0:
        parts.append(lagging(views, partition_rows))
    return Group(*parts)
