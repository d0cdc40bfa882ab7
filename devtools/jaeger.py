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
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools.ports import free_port, project_root
from devtools.server import LocalServer

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
class LocalJaeger(LocalServer):
    """`start()` returns once the query API answers; `otlp_endpoint` is what
    `OTEL_EXPORTER_OTLP_ENDPOINT` should be."""

    otlp_port: int = 0
    query_port: int = 0
    grpc_port: int = 0

    @property
    def otlp_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.otlp_port}"

    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{self.query_port}"

    def start(self, timeout: float = 60.0) -> str:
        binary = jaeger_binary()
        self.otlp_port = self.otlp_port or free_port()
        self.query_port = self.query_port or free_port()
        self.grpc_port = self.grpc_port or free_port()
        path = self._workdir() / "jaeger.yaml"
        # JSON is YAML: no YAML writer needed.
        path.write_text(json.dumps(config(self.otlp_port, self.query_port, self.grpc_port)))
        self._run([str(binary), f"--config=file:{path}"], self._ready, timeout)
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
