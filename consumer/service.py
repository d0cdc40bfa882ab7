"""Composition root: builds everything from `Settings` and owns the lifecycle.

settings → Kafka security → metrics → processor (consumer.pipeline) → engine
(with exactly-once delivery, the PostgreSQL sink is the engine's offset store
and reads the engine's positions) →
HTTP probes → signals → broker check (TLS handshake, authentication) → start.
SIGTERM/SIGINT drain and exit 0; a second signal stops at once after
committing what is done; a drain past `shutdown_timeout`, a fatal processing
error or a failed start exits 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from typing import TYPE_CHECKING

from aiokafka.errors import KafkaError

from consumer.config import Delivery, Settings, secrets_of
from consumer.engine.engine import Engine
from consumer.engine.wire import check_codecs
from consumer.errors import BrokerError, ConfigError, ConsumerError, RegistryError
from consumer.masking import mask_url
from consumer.observability.http import HttpServer
from consumer.observability.logging import setup_logging
from consumer.observability.loop import LoopLagMonitor
from consumer.observability.metrics import Metrics
from consumer.observability.tracing import start_tracing
from consumer.pipeline import Pipeline, build_processor
from consumer.security import KafkaSecurity, check_broker, kafka_security, not_authorized
from consumer.types import OffsetStore

if TYPE_CHECKING:
    from consumer.observability.otel import Tracing

log = logging.getLogger("consumer")


async def serve(settings: Settings) -> int:
    security = kafka_security(settings)  # a bad certificate or key: ConfigError, exit 2
    check_codecs()  # a topic may hold any codec: a missing library is exit 2, not a fetch crash
    log.info("starting", extra={
        "bootstrap_servers": settings.bootstrap_servers, "topics": settings.topics,
        "group": settings.group_id, "security_protocol": settings.security_protocol.value,
        "kafka_identity": security.identity(), "sink": mask_url(settings.sink_url)})
    metrics = Metrics()
    tracing = start_tracing(settings.tracing)  # an invalid OTEL_* variable: exit 2
    processor = _processor(settings, metrics, security, tracing)
    metrics.declare(topics=settings.topics, sink=processor.sink_name,
                    max_in_flight=settings.max_in_flight,
                    max_in_flight_bytes=settings.max_in_flight_bytes,
                    concurrency=settings.concurrency)
    offsets = offset_store(settings, processor.sink)
    engine = Engine(settings, processor, metrics, security=security, offsets=offsets)
    if offsets is not None:
        offsets.bind(engine.position)  # each write reads the trackers' progress

    async def readiness() -> list[str]:
        reason = engine.unready_reason()
        return ([] if reason is None else [reason]) + await processor.unready()

    http = HttpServer(settings.http_host, settings.http_port, metrics.registry,
                      healthy=lambda: engine.healthy() and processor.healthy(),
                      ready=readiness)
    loop = asyncio.get_running_loop()
    signals = 0
    signalled = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        nonlocal signals
        signals += 1
        signalled.set()
        log.info("signal received", extra={"signal": sig.name, "count": signals})
        engine.request_stop(immediate=signals > 1)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    lag = LoopLagMonitor(metrics.event_loop_lag)
    await http.start()
    await lag.start()
    try:
        # One dial first: a wrong password or an untrusted certificate is one
        # clear line, not every client retrying and logging its own failure.
        await check_broker(settings.bootstrap_servers, security)
        await processor.start()
        code = await engine.run()
        if code != 0:
            await _linger(settings.metrics_linger, signalled)
    except (KafkaError, OSError, ConsumerError) as exc:
        # Broker or sink unreachable at start: exit 1 and let the supervisor
        # restart us with its back-off (outages after start are ridden out).
        reason = not_authorized(exc, settings, security) or (
            str(exc) if isinstance(exc, BrokerError | RegistryError) else repr(exc))
        log.error("cannot run: %s", reason)  # noqa: TRY400 - the reason is the message
        code = 1
        await engine.close()  # it may never have started: release its client
        await processor.close()
    finally:
        await lag.close()
        await http.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if tracing is not None:
            # Export the spans still buffered (bounded); the exporter blocks.
            await asyncio.to_thread(tracing.shutdown)
    log.info("stopped", extra={"exit_code": code})
    return code


def _processor(settings: Settings, metrics: Metrics, security: KafkaSecurity,
               tracing: Tracing | None) -> Pipeline:
    if tracing is None:  # nothing of tracing is loaded
        return build_processor(settings, metrics, security=security)
    from consumer.observability.spans import build_traced_processor

    return build_traced_processor(settings, tracing, metrics, security=security)


def offset_store(settings: Settings, sink: object) -> OffsetStore | None:
    """The sink as the engine's offset store under exactly-once delivery
    (`Settings` already refused it for any sink but PostgreSQL)."""
    if settings.delivery is not Delivery.EXACTLY_ONCE:
        return None
    from consumer.sinks.postgres import PostgresSink

    if not isinstance(sink, PostgresSink):
        raise ConfigError("CONSUMER_DELIVERY: exactly_once needs the PostgreSQL sink")
    return sink


async def _linger(seconds: float, signalled: asyncio.Event) -> None:
    """After a failure, keep serving /metrics (and failing /healthz) for
    `seconds` or until a signal, so Prometheus scrapes the state that explains
    the exit: an alert on the breaker gauge would otherwise race the exit."""
    if seconds > 0 and not signalled.is_set():
        log.info("serving /metrics for %.0fs before exiting", seconds)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(signalled.wait(), seconds)


def tune_gc() -> None:
    """Fewer cyclic-GC passes. Each message allocates a few short-lived
    objects (context, futures, rows) that reference counting frees; the
    default gen-0 threshold (700) still runs the collector every few
    messages, over every live record in flight, and measured as about half
    of the pipeline's per-message time. Objects alive at start-up (modules,
    models, clients) are moved out of the collector's view."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def main(settings: Settings) -> int:
    setup_logging(settings.log_level, settings.log_format, secrets=secrets_of(settings))
    tune_gc()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - optional speed-up
        return asyncio.run(serve(settings))
    return uvloop.run(serve(settings))
