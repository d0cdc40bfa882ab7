"""`helm` against the chart, with its own scratch home (never the user's)."""

from __future__ import annotations

import json
import math
import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from consumer.config import Settings
from consumer.engine.engine import PROCESSOR_CLOSE_MIN
from consumer.sinks.kafka import SEND_TIMEOUT
from consumer.sinks.postgres import CLOSE_TIMEOUT
from devtools.ports import project_root

CHART = project_root() / "helm" / "consumer"

Manifest = dict[str, Any]


def set_args(values: dict[str, Any]) -> list[str]:
    """`--set-json path=value` for each dotted path (JSON keeps types exact)."""
    args = []
    for path, value in values.items():
        args += ["--set-json", f"{path}={json.dumps(value)}"]
    return args


@dataclass(frozen=True, slots=True)
class Helm:
    binary: Path
    home: Path
    kubeconfig: Path | None = None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for var in ("CACHE", "CONFIG", "DATA"):
            env[f"HELM_{var}_HOME"] = str(self.home / var.lower())
        if self.kubeconfig is not None:
            env["KUBECONFIG"] = str(self.kubeconfig)
        return env

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(self.binary), *args], check=False, env=self.env(),
                                capture_output=True, text=True, timeout=240)
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}")
        return result

    def template(self, values: dict[str, Any] | None = None,
                 kube_version: str = "1.30.0") -> list[Manifest]:
        """The chart rendered offline, as a list of manifests."""
        out = self.run("template", "rel", str(CHART), "--namespace", "ns",
                       "--kube-version", kube_version, *set_args(values or {})).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]


def one(manifests: Iterable[Manifest], kind: str) -> Manifest:
    found = [m for m in manifests if m["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def settings_map(manifests: Iterable[Manifest]) -> Manifest:
    """The ConfigMap of service settings (not the dashboard's)."""
    found = [m for m in manifests
             if m["kind"] == "ConfigMap" and not m["metadata"]["name"].endswith("-dashboard")]
    assert len(found) == 1
    return found[0]


def workload(manifests: Iterable[Manifest]) -> Manifest:
    found = [m for m in manifests if m["kind"] in ("Deployment", "StatefulSet")]
    assert len(found) == 1, f"expected one workload, got {[m['kind'] for m in found]}"
    return found[0]


def container(manifests: Iterable[Manifest]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = workload(manifests)["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def sink_close_seconds(url: str | None) -> float:
    """How long the sink's close may take; `None` is a URL the chart cannot
    see (an existing Secret's): the longest."""
    if url is None:
        return max(CLOSE_TIMEOUT, SEND_TIMEOUT)
    if url.startswith("kafka:"):
        return SEND_TIMEOUT
    if url.startswith("postgres"):
        return CLOSE_TIMEOUT
    return 0.0


def grace_period(settings: Settings, sink_url: str | None, margin: int) -> int:
    """terminationGracePeriodSeconds as the chart must derive it: every
    deadline on the service's stop path, in order, plus the margin."""
    stop = (settings.shutdown_timeout           # the drain
            + settings.commit_timeout           # the final commit
            + PROCESSOR_CLOSE_MIN               # closing the processor, at least
            + settings.dlq_send_timeout         # the dead-letter producer's stop
            + sink_close_seconds(sink_url)      # the sink's close
            + settings.commit_timeout)          # leaving the group
    return math.ceil(stop) + margin
