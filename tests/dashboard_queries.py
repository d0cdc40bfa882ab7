"""The shipped dashboard's queries, with Grafana's variables substituted, for
the static test (tests/unit/observability) and the live one
(tests/integration/observability)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "helm" / "consumer" / "files" / "dashboard.json"
ALERTS = ROOT / "helm" / "consumer" / "files" / "alerts.yaml"
ALERT_TESTS = ROOT / "tests" / "alerts" / "alerts_test.yaml"

#: What Grafana would put in: every job, instance and topic ("All"), and a
#: rate interval of four scrape intervals at the live test's 1 s scrape.
VARIABLES = {"$job": ".*", "$instance": ".*", "$topic": ".*", "$__rate_interval": "4s"}


@dataclass(frozen=True)
class PanelQuery:
    panel: str
    ref: str
    expr: str  # variables substituted
    raw: str  # as in the JSON


def load() -> dict[str, Any]:
    model: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return model


def panels(model: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that draws something (rows skipped, collapsed rows opened)."""
    for panel in model["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels") or []
        else:
            yield panel


def substitute(expr: str, variables: dict[str, str] = VARIABLES) -> str:
    # Longest names first: "$__rate_interval" before anything it contains.
    for name in sorted(variables, key=len, reverse=True):
        expr = expr.replace(name, variables[name])
    return expr


def queries(model: dict[str, Any]) -> list[PanelQuery]:
    return [PanelQuery(p["title"], t["refId"], substitute(t["expr"]), t["expr"])
            for p in panels(model) for t in p.get("targets", [])]
