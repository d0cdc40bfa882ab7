"""`CONSUMER_TRACING`: the one switch between no tracing at all and
OpenTelemetry over OTLP (`consumer.observability.otel`, loaded only then)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from consumer.errors import ConfigError

if TYPE_CHECKING:
    from consumer.observability.otel import Tracing


def start_tracing(kind: str) -> Tracing | None:
    """None for `none` (nothing of OpenTelemetry is imported); for `otlp` a
    `Tracing` built from the `OTEL_*` variables and installed (global
    provider, trace ids on log lines). Raises `ConfigError` when the `otel`
    extra is not installed or an `OTEL_*` variable is invalid."""
    if kind == "none":
        return None
    try:
        from consumer.observability.otel import Tracing
    except ImportError as exc:
        raise ConfigError(f"CONSUMER_TRACING: {kind} needs the otel extra "
                          f"(pip install 'consumer[otel]'): {exc}") from exc
    tracing = Tracing.from_env()
    tracing.install()
    return tracing
