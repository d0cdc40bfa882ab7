"""The service's Grafana dashboard, as code (grafana-foundation-sdk builders).

    python -m devtools.dashboard > helm/consumer/files/dashboard.json

The JSON is committed in the chart, which provisions it, and the compose stack
mounts the same file; a unit test fails when it differs from `render()`.
Every query selects `job`, `instance` (and `topic` where the metric has it)
from the dashboard's variables, every panel reads the `datasource` variable,
and every `rate()` runs over `$__rate_interval`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeVar

from grafana_foundation_sdk.builders.common import (
    ReduceDataOptions,
    VizLegendOptions,
    VizTooltipOptions,
)
from grafana_foundation_sdk.builders.dashboard import (
    Dashboard,
    DatasourceVariable,
    QueryVariable,
    Row,
    ThresholdsConfig,
)
from grafana_foundation_sdk.builders.heatmap import Panel as Heatmap
from grafana_foundation_sdk.builders.heatmap import RowsHeatmapOptions, YAxisConfig
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.builders.stat import Panel as Stat
from grafana_foundation_sdk.builders.timeseries import Panel as Timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    BigValueColorMode,
    BigValueGraphMode,
    HeatmapCellLayout,
    LegendDisplayMode,
    LegendPlacement,
    SortOrder,
    TooltipDisplayMode,
)
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    Threshold,
    ThresholdsMode,
    ValueMap,
    ValueMappingResult,
    VariableOption,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

UID = "consumer-service"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
#: Label matchers every query carries; TOPIC adds the topic where it exists.
SEL = 'job=~"$job", instance=~"$instance"'
TOPIC = f'{SEL}, topic=~"$topic"'
RI = "$__rate_interval"
P = TypeVar("P", Timeseries, Stat, Heatmap)


@dataclass(frozen=True, slots=True)
class Q:
    """One panel query: PromQL and its legend."""

    expr: str
    legend: str = ""


def rate(metric: str, sel: str = TOPIC, by: str = "") -> str:
    """`sum [by (...)] (rate(metric{sel}[$__rate_interval]))`."""
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({metric}{{{sel}}}[{RI}]))"


def quantile(q: float, histogram: str, sel: str = TOPIC, by: str = "") -> str:
    keys = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, {rate(histogram + '_bucket', sel, keys)})"


def _target(q: Q, ref: str, heatmap: bool = False) -> Dataquery:
    target = Dataquery().expr(q.expr).ref_id(ref).datasource(DATASOURCE)
    if heatmap:
        return target.format(PromQueryFormat.HEATMAP).legend_format("{{le}}")
    return target.legend_format(q.legend or "__auto")


def _common(panel: P, title: str, description: str, unit: str, queries: tuple[Q, ...], *,
            width: int, height: int, heatmap: bool = False) -> P:
    panel.title(title).description(description).unit(unit).datasource(DATASOURCE)
    panel.span(width).height(height)
    for i, q in enumerate(queries):
        panel.with_target(_target(q, chr(ord("A") + i), heatmap))
    return panel


def graph(title: str, description: str, unit: str, *queries: Q, width: int = 8,
          minimum: float | None = 0) -> Timeseries:
    panel = (_common(Timeseries(), title, description, unit, queries, width=width, height=8)
             .fill_opacity(10).line_width(1)
             .legend(VizLegendOptions().display_mode(LegendDisplayMode.LIST)
                     .placement(LegendPlacement.BOTTOM).show_legend(True))
             .tooltip(VizTooltipOptions().mode(TooltipDisplayMode.MULTI)
                      .sort(SortOrder.DESCENDING)))
    return panel.min(minimum) if minimum is not None else panel


def stat(title: str, description: str, unit: str, *queries: Q, warn: float | None = None,
         crit: float | None = None, mappings: dict[str, tuple[str, str]] | None = None) -> Stat:
    panel = (_common(Stat(), title, description, unit, queries, width=3, height=4)
             .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False))
             .graph_mode(BigValueGraphMode.AREA).color_mode(BigValueColorMode.VALUE))
    if warn is not None or crit is not None:
        steps = [Threshold(value=None, color="green")]
        if warn is not None:
            steps.append(Threshold(value=warn, color="orange"))
        if crit is not None:
            steps.append(Threshold(value=crit, color="red"))
        panel = panel.thresholds(ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(steps))
    if mappings:
        panel = panel.mappings([ValueMap(options={
            value: ValueMappingResult(text=text, color=color)
            for value, (text, color) in mappings.items()})])
    return panel


def heatmap(title: str, description: str, query: Q) -> Heatmap:
    # Buckets come from the histogram: Grafana must not re-bucket them.
    return (_common(Heatmap(), title, description, "s", (query,), width=12, height=8,
                     heatmap=True)
            .calculate(False).y_axis(YAxisConfig().unit("s"))
            .rows_frame(RowsHeatmapOptions().layout(HeatmapCellLayout.LE)))


def _overview() -> list[Any]:
    done = rate("consumer_messages_total")
    # Of what was fetched: while a sink is down only dead letters complete.
    ratio = (f'{rate("consumer_dlq_messages_total")} / '
             f'clamp_min({rate("consumer_fetched_messages_total")}, 1e-9)')
    return [
        stat("Messages/s", "Messages done per second (every outcome).", "cps", Q(done)),
        stat("Dead-letter ratio", "Share of fetched messages sent to the dead-letter topic.",
             "percentunit", Q(ratio), warn=0.01, crit=0.05),
        stat("Total lag", "Messages behind the high watermark, all partitions.", "short",
             Q(f"sum(consumer_lag{{{TOPIC}}})"), warn=10_000, crit=100_000),
        stat("Max time lag", "Age of the oldest record not yet done, worst partition.", "s",
             Q(f"max(consumer_lag_seconds{{{TOPIC}}})"), warn=60, crit=300),
        stat("p99 processing",
             "99th percentile of processing time per message (validation to done or "
             "dead-lettered).", "s",
             Q(quantile(0.99, "consumer_processing_seconds")), warn=1, crit=5),
        stat("Breaker", "Dead-letter circuit breaker: OPEN stops consumption.", "none",
             Q(f"max(consumer_dlq_breaker_open{{{SEL}}})"),
             mappings={"0": ("closed", "green"), "1": ("OPEN", "red")}),
        stat("Paused partitions", "Partitions paused by flow control.", "short",
             Q(f"sum(consumer_paused_partitions{{{SEL}}})"), warn=1),
        stat("Assigned partitions", "Partitions assigned to the selected members.", "short",
             Q(f"sum(consumer_assigned_partitions{{{SEL}}})")),
    ]


def _throughput() -> list[Any]:
    return [
        graph("Messages by outcome", "Messages done per second, by final outcome.", "cps",
              Q(rate("consumer_messages_total", by="outcome"), "{{outcome}}"), width=12),
        graph("Fetched vs done", "Records fetched from Kafka and messages done, per second; "
              "a lasting gap is work piling up in flight.", "cps",
              Q(rate("consumer_fetched_messages_total"), "fetched"),
              Q(rate("consumer_messages_total"), "done"), width=12),
    ]


def _lag() -> list[Any]:
    lag = f"sum(consumer_lag{{{TOPIC}}})"
    return [
        graph("Lag per partition", "High watermark minus the committable offset.", "short",
              Q(f"sum by (topic, partition) (consumer_lag{{{TOPIC}}})",
                "{{topic}}[{{partition}}]")),
        graph("Time lag per partition", "Age of the oldest record not yet done (0 when "
              "caught up).", "s",
              Q(f"max by (topic, partition) (consumer_lag_seconds{{{TOPIC}}})",
                "{{topic}}[{{partition}}]")),
        graph("Catch-up time estimate", "Total lag divided by how fast it shrank over 5 m; "
              "no value while it is not shrinking.", "s",
              Q(f"{lag} / (-sum(deriv(consumer_lag{{{TOPIC}}}[5m])) > 0)", "catch-up")),
        graph("Commit progress", "Committed offsets advanced per second, by topic.", "cps",
              Q(f"sum by (topic) (deriv(consumer_committed_offset{{{TOPIC}}}[{RI}]))",
                "{{topic}}")),
        graph("Commit latency", "Offset commit duration.", "s",
              Q(quantile(0.5, "consumer_commit_seconds", SEL), "p50"),
              Q(quantile(0.99, "consumer_commit_seconds", SEL), "p99")),
        graph("Commit failures", "Failed offset commits per second, by reason.", "cps",
              Q(rate("consumer_commit_failures_total", SEL, "reason"), "{{reason}}")),
        graph("Last commit age per partition", "Seconds since the partition's offset was "
              "last committed; it grows while nothing new is done (stuck, or idle).", "s",
              Q(f"time() - max by (topic, partition) "
                f"(consumer_last_commit_timestamp_seconds{{{TOPIC}}})",
                "{{topic}}[{{partition}}]"), width=12),
        graph("In flight per partition", "Messages fetched and not yet done, per partition "
              "(a partition over its share pauses: consumer_partition_paused).", "short",
              Q(f"sum by (topic, partition) (consumer_partition_in_flight_messages{{{TOPIC}}})",
                "{{topic}}[{{partition}}]"), width=12),
    ]


def _latency() -> list[Any]:
    hist = "consumer_processing_seconds"
    return [
        graph("Processing latency", "Handler time percentiles (validation, retries, handler).",
              "s", Q(quantile(0.5, hist), "p50"), Q(quantile(0.9, hist), "p90"),
              Q(quantile(0.99, hist), "p99"), width=12),
        heatmap("Processing latency heatmap", "Handler time distribution over time.",
                Q(f"sum by (le) (increase({hist}_bucket{{{TOPIC}}}[{RI}]))")),
        graph("Record age at done", "Broker timestamp to done: end-to-end delay.", "s",
              Q(quantile(0.5, "consumer_record_age_seconds"), "p50"),
              Q(quantile(0.99, "consumer_record_age_seconds"), "p99"), width=12),
        graph("Retries", "Handler attempts that failed and were tried again, per second.",
              "cps", Q(rate("consumer_retries_total", by="topic"), "{{topic}}"), width=12),
    ]


def _flow() -> list[Any]:
    return [
        graph("In-flight messages", "Messages fetched and not yet done, against the limit.",
              "short", Q(f"sum(consumer_in_flight_messages{{{SEL}}})", "in flight"),
              Q(f"sum(consumer_in_flight_limit_messages{{{SEL}}})", "limit")),
        graph("In-flight bytes", "Bytes fetched and not yet done, against the limit.",
              "bytes", Q(f"sum(consumer_in_flight_bytes{{{SEL}}})", "in flight"),
              Q(f"sum(consumer_in_flight_limit_bytes{{{SEL}}})", "limit")),
        graph("Saturation", "In flight as a share of each limit, worst member.", "percentunit",
              Q(f"max(consumer_in_flight_messages{{{SEL}}} / "
                f"consumer_in_flight_limit_messages{{{SEL}}})", "messages"),
              Q(f"max(consumer_in_flight_bytes{{{SEL}}} / "
                f"consumer_in_flight_limit_bytes{{{SEL}}})", "bytes")),
        graph("Paused and assigned partitions", "Partitions paused by flow control, of those "
              "assigned.", "short",
              Q(f"sum(consumer_paused_partitions{{{SEL}}})", "paused"),
              Q(f"sum(consumer_assigned_partitions{{{SEL}}})", "assigned")),
        graph("Rebalances", "Partition revocations and assignments per second.", "cps",
              Q(rate("consumer_rebalances_total", SEL, "kind"), "{{kind}}")),
        graph("Revoked unprocessed", "Fetched messages left to the next owner on revocation, "
              "per second.", "cps",
              Q(rate("consumer_revoked_unprocessed_messages_total", SEL), "left")),
    ]


def _dead_letters() -> list[Any]:
    return [
        graph("Dead letters by reason", "Messages sent to the dead-letter topic per second, by "
              "error class.", "cps",
              Q(rate("consumer_dlq_messages_total", by="reason"), "{{reason}}")),
        graph("Dead-letter send failures", "Dead-letter sends that failed and are retried "
              "(the message stays in flight).", "cps",
              Q(rate("consumer_dlq_send_failures_total", SEL), "failures")),
        graph("Breaker", "1 once the dead-letter circuit breaker tripped, per member.", "none",
              Q(f"max by (instance) (consumer_dlq_breaker_open{{{SEL}}})", "{{instance}}")),
    ]


def _sinks() -> list[Any]:
    return [
        graph("Rows written", "Rows written per second, by sink.", "cps",
              Q(rate("consumer_sink_rows_written_total", SEL, "sink"), "{{sink}}")),
        graph("Flush latency p99", "99th percentile of a successful batch write.", "s",
              Q(quantile(0.99, "consumer_sink_flush_seconds", SEL, "sink"), "{{sink}}")),
        graph("Batch size", "Rows per written batch.", "short",
              Q(quantile(0.5, "consumer_sink_batch_rows", SEL, "sink"), "p50 {{sink}}"),
              Q(quantile(0.99, "consumer_sink_batch_rows", SEL, "sink"), "p99 {{sink}}")),
        graph("Sink errors", "Failed batch writes per second: retriable=true is retried "
              "(sink away), false is bisected (rows refused).", "cps",
              Q(rate("consumer_sink_errors_total", SEL, "sink, retriable"),
                "{{sink}} retriable={{retriable}}"), width=12),
        graph("Poison rows", "Rows the sink refused, isolated and dead-lettered, per second.",
              "cps", Q(rate("consumer_sink_poison_rows_total", SEL, "sink"), "{{sink}}"),
              width=12),
    ]


def _limiters() -> list[Any]:
    return [
        graph("Allowed rate", "Current request rate each downstream's limiter allows "
              "(halved on 429/503, then grows back).", "reqps",
              Q(f"max by (downstream) (consumer_ratelimit_rate{{{SEL}}})", "{{downstream}}")),
        graph("Limiter wait p99", "99th percentile wait for a downstream's token.", "s",
              Q(quantile(0.99, "consumer_ratelimit_wait_seconds", SEL, "downstream"),
                "{{downstream}}")),
        graph("Throttled answers", "429/503 answers per second, by downstream and status.",
              "cps", Q(rate("consumer_ratelimit_throttled_total", SEL, "downstream, status"),
                       "{{downstream}} {{status}}")),
    ]


def _process() -> list[Any]:
    return [
        graph("CPU", "Process CPU time per second (1 = one core).", "percentunit",
              Q(f"sum by (instance) (rate(process_cpu_seconds_total{{{SEL}}}[{RI}]))",
                "{{instance}}")),
        graph("Memory", "Resident memory.", "bytes",
              Q(f"sum by (instance) (process_resident_memory_bytes{{{SEL}}})",
                "{{instance}}")),
        graph("Open file descriptors", "Open fds against the process limit.", "short",
              Q(f"sum by (instance) (process_open_fds{{{SEL}}})", "open {{instance}}"),
              Q(f"sum by (instance) (process_max_fds{{{SEL}}})", "max {{instance}}")),
    ]


ROWS: tuple[tuple[str, Any], ...] = (
    ("Overview", _overview), ("Throughput", _throughput), ("Lag and commits", _lag),
    ("Processing latency", _latency), ("Flow control", _flow), ("Dead letters", _dead_letters),
    ("Sinks", _sinks), ("Rate limiters", _limiters), ("Process", _process),
)


def _variables() -> list[Any]:
    def query(name: str, label: str, expr: str) -> QueryVariable:
        return (QueryVariable(name).label(label).datasource(DATASOURCE)
                .query({"query": expr, "refId": f"var-{name}"})
                .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED).sort(VariableSort.ALPHABETICAL_ASC)
                .multi(True).include_all(True).all_value(".*")
                .current(VariableOption(selected=True, text="All", value="$__all")))

    return [
        DatasourceVariable("datasource").label("Data source").type("prometheus"),
        query("job", "Job", "label_values(consumer_build_info, job)"),
        query("instance", "Instance",
              'label_values(consumer_build_info{job=~"$job"}, instance)'),
        query("topic", "Topic",
              'label_values(consumer_messages_total{job=~"$job", instance=~"$instance"}, topic)'),
    ]


def build() -> Dashboard:
    board = (Dashboard("Consumer").uid(UID).tags(["consumer", "kafka"])
             .description("Kafka consumer service: throughput, lag, latency, flow control, "
                          "dead letters, sinks, rate limiters, process.")
             .refresh("30s").time("now-1h", "now").timezone("browser")
             .tooltip(DashboardCursorSync.CROSSHAIR).editable())
    for variable in _variables():
        board = board.with_variable(variable)
    for title, panels in ROWS:
        board = board.with_row(Row(title))
        for panel in panels():
            board = board.with_panel(panel)
    return board


def render() -> str:
    """The dashboard JSON, as committed (sorted keys, stable panel ids)."""
    model = json.loads(JSONEncoder(sort_keys=True).encode(build().build()))
    for i, panel in enumerate(model["panels"], start=1):
        panel["id"] = i
    return json.dumps(model, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")
