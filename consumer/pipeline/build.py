"""Builds a `Pipeline` from settings: what it is made of is loaded (handler,
middleware, sink) and checked before any I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from consumer.config import Settings
from consumer.formats import ValueFormat, build_value_format
from consumer.gates.context import Middleware
from consumer.pipeline.chain import Observer, load_handler, load_middleware
from consumer.pipeline.processor import Pipeline
from consumer.security import KafkaSecurity, kafka_security
from consumer.sinks.batcher import Batcher
from consumer.types import Handler, Sink

if TYPE_CHECKING:
    from consumer.observability.metrics import Metrics

STORE_HANDLER = "consumer.handlers.store:store_batch"


@dataclass(frozen=True, slots=True)
class Parts:
    """What a pipeline is built from, loaded from settings before any I/O."""

    handler: Handler
    middleware: list[Middleware]
    sink: Sink
    security: KafkaSecurity
    #: Whether the handler gets a timer: the built-in store handler never
    #: awaits (emit only buffers), so a timer per run would cost time and
    #: bound nothing.
    bounded: bool
    #: How record values are decoded; None for plain JSON.
    value_format: ValueFormat | None = None


def load_parts(settings: Settings, metrics: Metrics | None = None, *,
               security: KafkaSecurity | None = None) -> Parts:
    """Load the handler and middleware and build the sink; raises
    `ConfigError` (naming the setting) before any I/O."""
    from consumer.sinks import open_sink

    middleware = [load_middleware(spec) for spec in settings.middleware]
    security = security or kafka_security(settings)
    return Parts(handler=load_handler(settings.handler or STORE_HANDLER), middleware=middleware,
                 sink=open_sink(settings.sink_url, settings=settings, metrics=metrics,
                                security=security),
                 security=security, bounded=settings.handler is not None or bool(middleware),
                 value_format=build_value_format(settings, metrics))


def build_processor(settings: Settings, metrics: Metrics | None = None, *,
                    security: KafkaSecurity | None = None,
                    observer: Observer | None = None) -> Pipeline:
    """Build (not start) the pipeline from settings, raising `ConfigError`
    before any I/O. The caller must `await processor.start()` before the
    first run. With tracing on, the service passes the tracing `observer`
    (`consumer.observability.spans`), which also wraps the sink the batcher
    writes to."""
    parts = load_parts(settings, metrics, security=security)
    written = parts.sink if observer is None else observer.sink(parts.sink)
    return Pipeline(settings, metrics, handler=parts.handler, middleware=parts.middleware,
                    batcher=Batcher(written, settings, metrics), sink=parts.sink,
                    handler_timeout=parts.bounded, security=parts.security, observer=observer,
                    value_format=parts.value_format)
