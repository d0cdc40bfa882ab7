"""A real throw-away Prometheus from Debian's `prometheus` package, for the
live dashboard test and for watching `make run` by hand.

It runs with its own config and data directory, listens on 127.0.0.1 only,
scrapes the given targets and loads the given rule files. `stop()` ends it by
its pid and removes its data. Blocking; not for the service's event loop.
"""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools.ports import free_port
from devtools.server import LocalServer


@dataclass
class LocalPrometheus(LocalServer):
    """`start()` returns the base URL once Prometheus is ready."""

    targets: Sequence[str]
    rule_files: Sequence[Path] = ()
    job: str = "consumer"
    interval: str = "1s"  # scrape and rule evaluation
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> str:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus not found; run `make setup` first")
        self.port = self.port or free_port()
        workdir = self._workdir()
        config = {
            "global": {"scrape_interval": self.interval, "scrape_timeout": self.interval,
                       "evaluation_interval": self.interval},
            "rule_files": [str(Path(f).resolve()) for f in self.rule_files],
            "scrape_configs": [{"job_name": self.job,
                                "static_configs": [{"targets": list(self.targets)}]}],
        }
        # JSON is YAML: no YAML writer needed.
        (workdir / "prometheus.yml").write_text(json.dumps(config, indent=2))
        self._run([binary, f"--config.file={workdir / 'prometheus.yml'}",
                   f"--storage.tsdb.path={workdir / 'data'}",
                   f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                  self._ready, timeout)
        return self.url

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; returns `data`, raises on an error status."""
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as resp:
            body = json.loads(resp.read())
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body}")
        return body["data"]
