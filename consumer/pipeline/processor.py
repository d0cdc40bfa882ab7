"""`Pipeline`, the `Processor` the engine's workers run: it owns the gates'
resources (sink, batcher, dead-letter producer, rate limiters, HTTP client)
and runs each run down the one chain that `compose` built."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from consumer.config import Settings
from consumer.errors import CircuitOpenError
from consumer.formats import ValueFormat
from consumer.gates.breaker import CircuitBreaker
from consumer.gates.context import Middleware, RunContext
from consumer.gates.dlq import DeadLetterPublisher, Publisher
from consumer.gates.http import HttpClient
from consumer.gates.instruments import GateMetrics
from consumer.gates.ratelimit import Limiters
from consumer.gates.retry import RetryPolicy
from consumer.gates.settle import Settle
from consumer.pipeline.chain import Observer, compose
from consumer.security import KafkaSecurity, kafka_security
from consumer.sinks.base import Row
from consumer.types import DoneRun, Handler, Record, Sink

if TYPE_CHECKING:
    from consumer.observability.metrics import Metrics

#: Bound on one readiness check of the sink: inside the chart's probe timeout.
_CHECK_WITHIN = 1.0


class Rows(Protocol):
    """What the pipeline needs of its batcher (`consumer.sinks.batcher`)."""

    sink: Sink

    def submit_many(self, rows: Sequence[Row]) -> asyncio.Future[None]: ...

    async def start(self) -> None: ...

    async def flush(self) -> None: ...

    async def close(self) -> None: ...

    async def healthy(self) -> bool: ...


class Pipeline:
    """The `Processor` (consumer.types).

    `start()` opens the sink, the batcher and the dead-letter producer; the
    service awaits it before the first run. `process_run` raises only
    `CircuitOpenError` (the dead-letter breaker is open: stop consuming).
    `healthy()` is False once the breaker tripped. `close()` is safe twice;
    messages still waiting for a dead-letter acknowledgement stay undone.
    """

    def __init__(self, settings: Settings, metrics: Metrics | None = None, *,
                 handler: Handler, middleware: Sequence[Middleware] = (),
                 batcher: Rows | None = None, sink: Sink | None = None,
                 publisher: Publisher | None = None, limiters: Limiters | None = None,
                 handler_timeout: bool = True, security: KafkaSecurity | None = None,
                 observer: Observer | None = None,
                 value_format: ValueFormat | None = None) -> None:
        self.settings = settings
        #: How record values are decoded (consumer.formats); None: plain JSON.
        self.value_format = value_format
        self.metrics = GateMetrics(metrics)
        self.sink = sink
        self.batcher = batcher
        self.publisher: Publisher = publisher or DeadLetterPublisher(
            settings.bootstrap_servers, settings.dead_letter_topic,
            client_id=settings.client_id, send_timeout=settings.dlq_send_timeout,
            metrics=self.metrics, compression_type=settings.producer_compression,
            **(security or kafka_security(settings)).options())
        self.limiters = limiters or Limiters(settings.rate_limit, settings.rate_burst,
                                             metrics=self.metrics)
        self.http = HttpClient(self.limiters, timeout=settings.handler_timeout)
        self.breaker = CircuitBreaker(settings.dlq_breaker_ratio, settings.dlq_breaker_window,
                                      settings.dlq_breaker_consecutive)
        self.observer = observer
        self.settle = Settle(self.publisher, self.breaker, self.metrics,
                             group=settings.group_id,
                             observe=None if observer is None else observer.dead_letter)
        self.takes_runs, self._chain = compose(
            handler, middleware, settings=settings, metrics=self.metrics, settle=self.settle,
            policy=RetryPolicy.from_settings(settings),
            timeout=settings.handler_timeout if handler_timeout else None, observer=observer,
            value_format=value_format)
        self._submit = None if batcher is None else batcher.submit_many
        self._started = False
        self._closed = False

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        try:
            if self.value_format is not None:  # the registry answers and lets us in
                await self.value_format.start()
            if self.sink is not None:
                await self.sink.open()
            if self.batcher is not None:
                await self.batcher.start()
            await self.publisher.start()
        except BaseException:
            # Half-started: release what did start, then let the service fail.
            await self.close()
            raise
        self.metrics.breaker(False)

    @property
    def sink_name(self) -> str:
        return "none" if self.sink is None else self.sink.name

    def healthy(self) -> bool:
        return not self.breaker.open

    async def unready(self) -> list[str]:
        """Why messages cannot be finished right now — the sink cannot write
        (its writes fail or its health check does), the dead-letter topic
        cannot be written, the breaker is open — or [] when they can. Each
        check is bounded, so a probe never hangs on a dead server."""
        reasons: list[str] = []
        if self.breaker.open:
            reasons.append(f"dead-letter circuit breaker open: {self.breaker.reason}")
        if self.batcher is not None:
            try:
                async with asyncio.timeout(_CHECK_WITHIN):
                    ok = await self.batcher.healthy()
            except Exception:  # noqa: BLE001 - any failure of the check: not ready
                ok = False
            if not ok:
                reasons.append(f"sink {self.batcher.sink.name}: cannot write")
        if not self.publisher.writing_ok:
            reasons.append(f"dead-letter topic {self.publisher.topic}: sends failing")
        if self.value_format is not None:
            reasons.extend(self.value_format.unready())
        return reasons

    async def flush(self) -> None:
        if self.batcher is not None:
            await self.batcher.flush()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self.batcher is not None:
                await self.batcher.close()
            # Rows the sink refused while closing start dead-letter sends: let
            # them finish while the producer is still up.
            await self.settle.drain(self.settings.dlq_send_timeout)
        finally:
            await self.publisher.close()
            await self.settle.cancel()
            await self.http.close()
            await self.limiters.close()
            if self.sink is not None:
                await self.sink.close()
            if self.value_format is not None:
                await self.value_format.close()
            if self.observer is not None:
                self.observer.close()

    async def __aenter__(self) -> Pipeline:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def process_run(self, records: Sequence[Record], done: DoneRun) -> None:
        """Run `records` (one partition, ascending offsets) down the chain;
        `done` reports each record once its message is done."""
        if self.breaker.open:
            raise CircuitOpenError(f"dead-letter circuit breaker is open: {self.breaker.reason}")
        await self._chain(RunContext(records, done, self._submit, self.http))
        if self.breaker.open:
            raise CircuitOpenError(f"dead-letter circuit breaker is open: {self.breaker.reason}")
