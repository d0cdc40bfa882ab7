"""Tracing's cost in the pipeline bench: the traced contenders' settings and
the OTLP receiver they export to — a real Jaeger on 127.0.0.1 (the one the
integration test uses), started on first use and stopped by its pid."""

from __future__ import annotations

from devtools.jaeger import LocalJaeger

#: contender → share of messages sampled (OTEL_TRACES_SAMPLER_ARG).
TRACED = {"pipeline_none_traced_1pct": "0.01", "pipeline_none_traced_100pct": "1.0"}


class Receiver:
    def __init__(self) -> None:
        self._jaeger: LocalJaeger | None = None

    def env(self, share: str) -> dict[str, str]:
        """`consumer run`'s settings for tracing with this sampling share."""
        if self._jaeger is None:
            self._jaeger = LocalJaeger()
            self._jaeger.start()
        return {"CONSUMER_TRACING": "otlp",
                "OTEL_EXPORTER_OTLP_ENDPOINT": self._jaeger.otlp_endpoint,
                "OTEL_SERVICE_NAME": "consumer-bench",
                "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                "OTEL_TRACES_SAMPLER_ARG": share}

    def stop(self) -> None:
        if self._jaeger is not None:
            self._jaeger.stop()
            self._jaeger = None
