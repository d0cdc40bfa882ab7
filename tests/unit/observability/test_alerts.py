"""The shipped alert rules: valid (`promtool check rules`), complete (severity,
summary, description, runbook, `for:`), documented, and each one tested both
firing and quiet by `promtool test rules`."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import defaultdict
from typing import Any

import yaml

from tests.dashboard_queries import ALERT_TESTS, ALERTS, ROOT

RUNBOOK = ROOT / "docs" / "OBSERVABILITY.md"


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool missing: run `make setup` (scripts/setup-system.sh)"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120,
                          check=False, cwd=ROOT)


def test_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_pass_their_unit_tests() -> None:
    result = promtool("test", "rules", str(ALERT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_complete() -> None:
    rules = alert_rules()
    assert len(rules) >= 12
    names = [r["alert"] for r in rules]
    assert len(set(names)) == len(names), "duplicate alert names"
    for rule in rules:
        name = rule["alert"]
        assert "for" in rule, f"{name}: no for:"
        assert rule.get("labels", {}).get("severity") in {"warning", "critical"}, name
        annotations = rule.get("annotations", {})
        for key in ("summary", "description", "runbook"):
            assert annotations.get(key), f"{name}: no {key}"
        assert annotations["runbook"] == f"docs/OBSERVABILITY.md#{name.lower()}", name


def test_every_alert_has_a_runbook_section() -> None:
    headings = {m.group(1).lower() for m in
                re.finditer(r"^### (\w+)\s*$", RUNBOOK.read_text(), re.MULTILINE)}
    missing = {r["alert"] for r in alert_rules() if r["alert"].lower() not in headings}
    assert not missing, f"no runbook section in {RUNBOOK.name}"


def test_every_alert_is_tested_firing_and_quiet() -> None:
    spec = yaml.safe_load(ALERT_TESTS.read_text())
    assert [(ALERT_TESTS.parent / f).resolve() for f in spec["rule_files"]] == [ALERTS]
    fires: dict[str, int] = defaultdict(int)
    quiet: dict[str, int] = defaultdict(int)
    for test in spec["tests"]:
        for case in test.get("alert_rule_test", []):
            if case.get("exp_alerts"):
                fires[case["alertname"]] += 1
            else:
                quiet[case["alertname"]] += 1
    names = {r["alert"] for r in alert_rules()}
    assert names - set(fires) == set(), "alerts never tested firing"
    assert names - set(quiet) == set(), "alerts never tested quiet"
    assert set(fires) | set(quiet) <= names, "tests for alerts that do not exist"
