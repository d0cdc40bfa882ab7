"""The committed dashboard is what the generator makes, and every panel query
is valid PromQL over metrics the service registers, used as their types allow."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import promql_parser as pp
import pytest
from prometheus_client import Metric

from consumer.observability.metrics import Metrics
from devtools import dashboard
from tests.dashboard_queries import DASHBOARD, load, panels, queries

RATE_FUNCTIONS = {"rate", "increase", "irate"}
RATE_INTERVAL = timedelta(seconds=4)  # what tests.dashboard_queries substitutes


def registered() -> tuple[set[str], set[str]]:
    """(every sample name /metrics can show, those only valid inside rate())."""
    names: set[str] = set()
    cumulative: set[str] = set()
    families: list[Metric] = list(Metrics().registry.collect())
    for family in families:
        if family.type == "counter":
            cumulative.add(f"{family.name}_total")
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            for suffix in ("_bucket", "_sum", "_count"):
                cumulative.add(family.name + suffix)
                names.add(family.name + suffix)
        else:
            names.add(family.name)
    return names, cumulative


def selectors(node: Any, inside_rate: bool = False) -> list[tuple[str, bool, Any]]:
    """(metric name, inside rate/increase, range of a rate's matrix or None)
    for every selector in the expression."""
    if isinstance(node, pp.VectorSelector):
        return [(node.name or "", inside_rate, None)]
    if isinstance(node, pp.MatrixSelector):
        return [(node.vector_selector.name or "", inside_rate, node.range)]
    if isinstance(node, pp.Call):
        is_rate = node.func.name in RATE_FUNCTIONS
        # Only a rate-like call's own matrix must use the rate interval.
        return [(name, in_rate, rng if is_rate else None)
                for arg in node.args
                for name, in_rate, rng in selectors(arg, inside_rate or is_rate)]
    children = [getattr(node, attr, None) for attr in ("lhs", "rhs", "expr", "param")]
    return [found for child in children if child is not None
            for found in selectors(child, inside_rate)]


def test_committed_json_is_what_the_generator_makes() -> None:
    assert DASHBOARD.read_text() == dashboard.render(), (
        "regenerate: python -m devtools.dashboard "
        "> helm/consumer/files/dashboard.json")


def test_variables() -> None:
    variables = {v["name"]: v for v in load()["templating"]["list"]}
    assert set(variables) == {"datasource", "job", "instance", "topic"}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"


def test_every_panel_has_unit_description_datasource_and_queries() -> None:
    model = load()
    drawn = list(panels(model))
    assert len(drawn) >= 30
    for panel in drawn:
        title = panel["title"]
        assert panel["fieldConfig"]["defaults"].get("unit"), title
        assert panel.get("description"), title
        assert panel["datasource"]["uid"] == "${datasource}", title
        assert panel["targets"], title
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", title
    rows = [p["title"] for p in model["panels"] if p["type"] == "row"]
    assert rows == ["Overview", "Throughput", "Lag and commits", "Processing latency",
                    "Flow control", "Dead letters", "Sinks", "Rate limiters", "Process"]


@pytest.mark.parametrize("query", queries(load()), ids=lambda q: f"{q.panel}/{q.ref}")
def test_query_parses_and_uses_metrics_as_their_types_allow(query: Any) -> None:
    names, cumulative = registered()
    assert "$" not in query.expr, "a variable left unsubstituted"
    found = selectors(pp.parse(query.expr))
    assert found, "selects no metric"
    for name, in_rate, rng in found:
        assert name in names, f"{name} is not registered by the service"
        if name in cumulative:
            assert in_rate, f"counter {name} outside rate()/increase()"
        if rng is not None:
            assert rng == RATE_INTERVAL, f"rate over {rng}, not $__rate_interval"
    assert 'job=~"$job"' in query.raw
    assert 'instance=~"$instance"' in query.raw


def test_selector_walk_sees_what_the_checks_need() -> None:
    found = selectors(pp.parse(
        'sum(rate(a_total{x="1"}[4s])) / clamp_min(-sum(deriv(b[5m])), 1) + c_total'))
    assert found == [("a_total", True, RATE_INTERVAL), ("b", False, None),
                     ("c_total", False, None)]
