"""A real throw-away Jaeger (built once by `scripts/build-jaeger.sh`), the
tracing backend for the integration tests and for watching `make run`.

It takes OTLP over HTTP and answers trace queries over HTTP, keeps traces in
memory, and every listener it opens is on 127.0.0.1 at a free port: OTLP in,
the query API and UI, the query service's gRPC port (which cannot be turned
off); its own metrics and tracing are off, and no other receiver or extension
is configured. `stop()` ends it by its pid. Blocking; not for the service's
event loop.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consumer.dev.kafka import stop_process
from consumer.dev.ports import free_port, project_root

BUILD_SCRIPT = project_root() / "scripts" / "build-jaeger.sh"


def jaeger_binary() -> Path:
    """The cached binary, built first when missing (minutes, once)."""
    path = subprocess.run(["bash", str(BUILD_SCRIPT), "--print"], check=True,
                          capture_output=True, text=True).stdout.strip()
    subprocess.run(["bash", str(BUILD_SCRIPT)], check=True)
    return Path(path)


def config(otlp_port: int, query_port: int, grpc_port: int) -> dict[str, Any]:
    """Jaeger v2's (OpenTelemetry Collector) configuration: OTLP/HTTP in,
    memory storage, the query extension; nothing else listens."""
    loopback = "127.0.0.1"
    return {
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query"],
            "pipelines": {"traces": {"receivers": ["otlp"], "processors": [],
                                     "exporters": ["jaeger_storage_exporter"]}},
            "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "warn"}},
        },
        "extensions": {
            "jaeger_storage": {"backends": {"memory": {"memory": {"max_traces": 100_000}}}},
            "jaeger_query": {
                "storage": {"traces": "memory"},
                "enable_tracing": False,
                "http": {"endpoint": f"{loopback}:{query_port}"},
                "grpc": {"endpoint": f"{loopback}:{grpc_port}"},
            },
        },
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"{loopback}:{otlp_port}"}}}},
        "exporters": {"jaeger_storage_exporter": {"trace_storage": "memory"}},
    }


@dataclass
class LocalJaeger:
    """`start()` returns once the query API answers; `otlp_endpoint` is what
    `OTEL_EXPORTER_OTLP_ENDPOINT` should be."""

    otlp_port: int = 0
    query_port: int = 0
    grpc_port: int = 0
    _dir: Path | None = field(default=None, init=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def otlp_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.otlp_port}"

    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{self.query_port}"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def start(self, timeout: float = 60.0) -> str:
        binary = jaeger_binary()
        self.otlp_port = self.otlp_port or free_port()
        self.query_port = self.query_port or free_port()
        self.grpc_port = self.grpc_port or free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="consumer-jaeger-"))
        path = self._dir / "jaeger.yaml"
        # JSON is YAML: no YAML writer needed.
        path.write_text(json.dumps(config(self.otlp_port, self.query_port, self.grpc_port)))
        with (self._dir / "jaeger.log").open("wb") as log:
            self._proc = subprocess.Popen([str(binary), f"--config=file:{path}"],
                                          stdout=log, stderr=subprocess.STDOUT,
                                          cwd=self._dir)
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self._proc.poll() is not None:
                raise RuntimeError(f"jaeger exited {self._proc.returncode}: {self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError("jaeger not ready")
            time.sleep(0.2)
        return self.query_url

    def _ready(self) -> bool:
        try:
            self.api("/api/services")
        except (urllib.error.URLError, OSError):
            return False
        return True

    def api(self, path: str) -> Any:
        """GET a query-API path; the parsed JSON. Raises `HTTPError` on 4xx/5xx."""
        with urllib.request.urlopen(f"{self.query_url}{path}", timeout=10) as resp:
            return json.loads(resp.read())

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """The trace with this id (32 hex digits) from `/api/traces/<id>`, or
        None while Jaeger does not have it."""
        try:
            body = self.api(f"/api/traces/{trace_id}")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise
        data = body.get("data") or []
        found: dict[str, Any] | None = data[0] if data else None
        return found

    def log(self) -> str:
        path = self._dir / "jaeger.log" if self._dir else None
        return path.read_text(errors="replace")[-3000:] if path and path.exists() else ""

    def stop(self) -> None:
        """Terminate our own process (by its pid) and remove its files. Safe twice."""
        if self._proc is not None:
            proc, self._proc = self._proc, None
            if proc.poll() is None:
                stop_process(proc.pid, grace=15.0)
                proc.wait()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
