"""A real throw-away Prometheus from Debian's `prometheus` package, for the
live dashboard test and for watching `make run` by hand.

It runs with its own config and data directory, listens on 127.0.0.1 only,
scrapes the given targets and loads the given rule files. `stop()` ends it by
its pid and removes its data. Blocking; not for the service's event loop.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consumer.dev.kafka import stop_process
from consumer.dev.ports import free_port


@dataclass
class LocalPrometheus:
    """`start()` returns the base URL once Prometheus is ready."""

    targets: Sequence[str]
    rule_files: Sequence[Path] = ()
    job: str = "consumer"
    interval: str = "1s"  # scrape and rule evaluation
    port: int = 0
    _dir: Path | None = field(default=None, init=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> str:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus not found; run `make setup` first")
        self.port = self.port or free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="consumer-prometheus-"))
        config = {
            "global": {"scrape_interval": self.interval, "scrape_timeout": self.interval,
                       "evaluation_interval": self.interval},
            "rule_files": [str(Path(f).resolve()) for f in self.rule_files],
            "scrape_configs": [{"job_name": self.job,
                                "static_configs": [{"targets": list(self.targets)}]}],
        }
        # JSON is YAML: no YAML writer needed.
        (self._dir / "prometheus.yml").write_text(json.dumps(config, indent=2))
        with (self._dir / "prometheus.log").open("wb") as log:
            self._proc = subprocess.Popen(
                [binary, f"--config.file={self._dir / 'prometheus.yml'}",
                 f"--storage.tsdb.path={self._dir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self._proc.poll() is not None:
                raise RuntimeError(f"prometheus exited {self._proc.returncode}: {self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError("prometheus not ready")
            time.sleep(0.2)
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

    def log(self) -> str:
        path = self._dir / "prometheus.log" if self._dir else None
        return path.read_text(errors="replace")[-3000:] if path and path.exists() else ""

    def stop(self) -> None:
        """Terminate our own process (by its pid) and remove the data. Safe twice."""
        if self._proc is not None:
            proc, self._proc = self._proc, None
            if proc.poll() is None:
                stop_process(proc.pid, grace=15.0)
                proc.wait()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
