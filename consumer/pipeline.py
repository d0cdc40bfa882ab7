"""Builds the per-record `Processor` the engine runs and composes the gates —
the one place that decides their order:

    error boundary → metrics → validation → logging → retry → user middleware
    → timeout → handler → (emit → batcher → sink)

and, for a whole run at once (`process_run`, the fast path, taken when the
handler is a batch handler — the built-in store handler is one — and there is
no user middleware): validate the run in one pass, then in the run's order
the batch handler on each stretch of valid records (its rows to the batcher
as one unit, one `done` for the stretch) and the dead-letter path for each
invalid record. If the batch handler raises, the stretch is split: each
record goes through the per-record chain above alone, so the failing one is
retried and dead-lettered on its own.

Either way the pipeline routes the outcome: every emitted row written →
`done`; the chain gave up (fatal, invalid or exhausted) or the sink refused a
row → dead-letter topic → `done` once the broker acknowledged it. `done` is
never called for a message whose dead-letter send is unacknowledged: it stays
in flight.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from consumer.config import Settings
from consumer.errors import (
    CircuitOpenError,
    ConfigError,
    ConsumerError,
    DeadLetterError,
)
from consumer.formats import ValueFormat, build_value_format, prepare_until_ready
from consumer.gates.breaker import CircuitBreaker
from consumer.gates.context import Context
from consumer.gates.dlq import DeadLetterPublisher, Publisher, dead_letter_headers
from consumer.gates.http import HttpClient
from consumer.gates.instruments import GateMetrics
from consumer.gates.middleware import (
    ErrorBoundary,
    LoggingMiddleware,
    MetricsMiddleware,
    Middleware,
    TimeoutMiddleware,
    ValidationMiddleware,
    build_chain,
    handler_endpoint,
    load_middleware,
    on_retry_counter,
)
from consumer.gates.ratelimit import Limiters
from consumer.gates.retry import RetryMiddleware, RetryPolicy
from consumer.gates.runs import RunContext, Segment, is_batch_handler, per_event, validate_run
from consumer.security import KafkaSecurity, kafka_security
from consumer.sinks.batcher import Batcher, mark_retrieved
from consumer.types import Done, DoneRun, Handler, Record, Sink, Undecodable

if TYPE_CHECKING:
    from consumer.observability.metrics import Metrics

__all__ = ["Context", "Parts", "Pipeline", "build_processor", "load_handler", "load_parts"]

log = logging.getLogger("consumer.pipeline")

STORE_HANDLER = "consumer.handlers.store:store_batch"
#: Bound on one readiness check of the sink: inside the chart's probe timeout.
_CHECK_WITHIN = 1.0


def load_handler(spec: str) -> Handler:
    """`module:function` → the handler. Raises `ConfigError` naming
    CONSUMER_HANDLER when it cannot be imported or is not an async function."""
    module, _, name = spec.partition(":")
    try:
        handler = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"CONSUMER_HANDLER: cannot load {spec!r}: {exc}") from exc
    if not callable(handler):
        raise ConfigError(f"CONSUMER_HANDLER: {spec!r} is not callable")
    loaded: Handler = handler
    return loaded


class Pipeline:
    """The `Processor`: see the module docstring.

    `start()` opens the sink, the batcher and the dead-letter producer; the
    service awaits it before the first `process`. `process` raises only
    `CircuitOpenError` (the dead-letter breaker is open: stop consuming).
    `healthy()` is False once the breaker tripped. `close()` is safe twice;
    messages still waiting for a dead-letter acknowledgement stay undone.
    """

    def __init__(self, settings: Settings, metrics: Metrics | None = None, *,
                 handler: Handler, middleware: Sequence[Middleware] = (),
                 batcher: Any = None, sink: Any = None,
                 publisher: Publisher | None = None,
                 limiters: Limiters | None = None, handler_timeout: bool = True,
                 security: KafkaSecurity | None = None,
                 value_format: ValueFormat | None = None) -> None:
        self.settings = settings
        # Value formats hook (consumer.formats): None = plain JSON, as before.
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
        self.policy = RetryPolicy.from_settings(settings)
        chain: list[Middleware] = [
            ErrorBoundary(),
            MetricsMiddleware(self.metrics),
            self._validation(settings.allow_unknown_types),
            LoggingMiddleware(),
            self._retry(self.policy, on_retry=on_retry_counter(self.metrics)),
            *middleware,
        ]
        if handler_timeout:
            chain.append(TimeoutMiddleware(settings.handler_timeout))
        self._submit = batcher.submit if batcher is not None else None
        self._submit_many = getattr(batcher, "submit_many", None)
        # A batch handler takes whole runs unless user middleware must see
        # each event; per event (and on the split path) it gets a run of one.
        self._run_handler = handler if is_batch_handler(handler) and not middleware else None
        if is_batch_handler(handler):
            handler = per_event(handler, self._submit_many)
        self._chain = build_chain(chain, handler_endpoint(handler))
        self._run_timeout = settings.handler_timeout if handler_timeout else None
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = False
        self._closed = False

    # What a traced pipeline replaces by its own (consumer.gates.tracing).
    def _validate_run(self, records: Sequence[Record]) -> list[Segment]:
        return validate_run(records, allow_unknown=self.settings.allow_unknown_types,
                            value_format=self.value_format)

    def _validation(self, allow_unknown: bool) -> Middleware:
        return ValidationMiddleware(allow_unknown, value_format=self.value_format)

    def _retry(self, policy: RetryPolicy, *, on_retry: Callable[[Context], None]) -> Middleware:
        return RetryMiddleware(policy, on_retry=on_retry)

    # -- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        try:
            if self.value_format is not None:  # value formats hook: the registry answers
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
        if self.value_format is not None:  # value formats hook: the registry is down
            reasons.extend(self.value_format.unready())
        return reasons

    @property
    def takes_runs(self) -> bool:
        """True when a run is one handler call (a batch handler, no user
        middleware): the dispatcher then packs keys into long runs."""
        return self._run_handler is not None

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
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=self.settings.dlq_send_timeout)
        finally:
            await self.publisher.close()
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.http.close()
            await self.limiters.close()
            if self.sink is not None:
                await self.sink.close()
            if self.value_format is not None:  # value formats hook
                await self.value_format.close()

    async def __aenter__(self) -> Pipeline:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- per record ---------------------------------------------------------

    async def process(self, record: Record, done: Done) -> None:
        if self.breaker.open:
            raise CircuitOpenError(f"dead-letter circuit breaker is open: {self.breaker.reason}")
        ctx = Context(record, submit=self._submit, http=self.http)
        await self._chain(ctx)
        # Rows emitted after the handler returned (from a task it left behind)
        # would not be waited for: refuse them rather than finish early.
        ctx.submit = None
        if ctx.error is not None:
            for fut in ctx.pending:
                fut.add_done_callback(mark_retrieved)
            await self._dead_letter(ctx, ctx.error, done)
        else:
            # Judge the handler when it returns, not when its rows are written:
            # good messages wait for their batch while bad ones are dead-lettered
            # at once, so counting in completion order would see a run of
            # failures that the input does not have.
            if self.breaker.record(False):
                self._tripped()
            if ctx.pending:
                self._when_written(ctx, done)
            else:
                self._succeeded(record, done)
        if self.breaker.open:
            raise CircuitOpenError(f"dead-letter circuit breaker is open: {self.breaker.reason}")

    # -- per run --------------------------------------------------------------

    async def process_run(self, records: Sequence[Record], done: DoneRun) -> None:
        """`process` for a run of one partition (ascending offsets): the same
        outcome per record, with one validation pass, one handler call, one
        unit of rows and one `done` for the run when nothing fails."""
        if self._run_handler is None:
            for record in records:
                await self.process(record, lambda r: done((r,)))
            return
        if self.breaker.open:
            raise CircuitOpenError(f"dead-letter circuit breaker is open: {self.breaker.reason}")
        started = time.perf_counter()
        if self.value_format is not None:  # value formats hook: writer schemas first
            await prepare_until_ready(self.value_format, [r.value for r in records])
        for segment in self._validate_run(records):
            if self.breaker.open:
                break  # the rest stays undone, as after a per-record trip
            if segment.error is None:
                await self._handle_run(segment.records, segment.events, done)
                continue
            ctx = Context(segment.records[0])
            ctx.failed(segment.error)
            await self._dead_letter(ctx, segment.error, lambda r: done((r,)))
        # One observation per run: the time per message of this run.
        self.metrics.processing(records[0].topic, (time.perf_counter() - started) / len(records))
        if self.breaker.open:
            raise CircuitOpenError(f"dead-letter circuit breaker is open: {self.breaker.reason}")

    async def _handle_run(self, records: list[Record], events: list[Any], done: DoneRun) -> None:
        assert self._run_handler is not None
        ctx = RunContext(records, events, submit=self._submit_many, http=self.http)
        try:
            if self._run_timeout is None:
                await self._run_handler(events, ctx)
            else:
                async with asyncio.timeout(self._run_timeout):
                    await self._run_handler(events, ctx)
            ctx.submit_staged()
        except (Exception, asyncio.CancelledError) as exc:
            task = asyncio.current_task()
            if isinstance(exc, asyncio.CancelledError) and (task is None or task.cancelling()):
                raise  # the worker is being cancelled: not the handler's failure
            for fut in ctx.units:
                fut.add_done_callback(mark_retrieved)
            log.info("run of %d from %s[%d]@%d failed (%r); split to single records",
                     len(records), ctx.topic, ctx.partition, records[0].offset, exc)
            for record in records:
                await self.process(record, lambda r: done((r,)))
            return
        finally:
            ctx.submit = None  # rows emitted after the handler returned: refused
        if self.breaker.record_passed(len(records)):
            self._tripped()
        if not ctx.units:
            self._run_succeeded(records, done)
            return
        remaining = len(ctx.units)

        def settled(_: asyncio.Future[None]) -> None:
            nonlocal remaining
            remaining -= 1
            if not remaining:
                self._run_written(ctx, done)

        for fut in ctx.units:
            fut.add_done_callback(settled)

    def _run_written(self, ctx: RunContext, done: DoneRun) -> None:
        """Every unit settled: done for the records whose rows were all
        written, dead-letter those with a refused row, and leave in flight
        those whose rows were not written (shutting down)."""
        good, refused, stuck = ctx.outcome()
        records = ctx.records
        self._run_succeeded(good, done)
        for i, exc in refused:
            one = Context(records[i])
            one.failed(exc)
            self._spawn(self._dead_letter(one, exc, lambda r: done((r,))))
        if stuck:
            log.info("%d records of %s[%d] left in flight: their rows were not written",
                     len(stuck), ctx.topic, ctx.partition)

    def _run_succeeded(self, records: Sequence[Record], done: DoneRun) -> None:
        if records:
            done(records)
            self.metrics.outcome(records[0].topic, "ok", len(records))

    def _succeeded(self, record: Record, done: Done) -> None:
        done(record)
        self.metrics.outcome(record.topic, "ok")

    def _when_written(self, ctx: Context, done: Done) -> None:
        """Call `done` once every emitted row's future resolved — from the
        futures' callbacks, so the worker is free meanwhile."""
        remaining = len(ctx.pending)

        def settled(_: asyncio.Future[None]) -> None:
            nonlocal remaining
            remaining -= 1
            if remaining:
                return
            errors = [f.exception() if not f.cancelled() else asyncio.CancelledError()
                      for f in ctx.pending]
            failures = [e for e in errors if e is not None]
            if not failures:
                self._succeeded(ctx.record, done)
            elif all(isinstance(e, ConsumerError) and not e.retriable for e in failures):
                # The sink refused a row (isolated by the batcher): dead-letter.
                ctx.failed(failures[0])
                self._spawn(self._dead_letter(ctx, failures[0], done))
            else:
                # Not written because we are shutting down: leave it undone so
                # it is consumed again after the restart.
                log.info("%s[%d]@%d left in flight: %r", ctx.topic, ctx.partition, ctx.offset,
                         failures[0])

        for fut in ctx.pending:
            fut.add_done_callback(settled)

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _dead_letter(self, ctx: Context, exc: BaseException, done: Done) -> None:
        """Send to the dead-letter topic; `done` only after the acknowledgement."""
        record = ctx.record
        now = time.time()
        headers = dead_letter_headers(
            record, exc, attempts=ctx.attempt, group=self.settings.group_id,
            first_failure=ctx.first_failure or now, last_failure=ctx.last_failure or now)
        value: bytes | Undecodable | None = record.value
        if type(value) is Undecodable:
            value = value.raw
        try:
            await self.publisher.send(record.key, value, headers)  # type: ignore[arg-type]
        except DeadLetterError:
            log.warning("%s[%d]@%d not dead-lettered before close; left in flight",
                        record.topic, record.partition, record.offset)
            return
        done(record)
        error_type = type(exc).__name__
        self.metrics.dead_lettered(record.topic, error_type)
        self.metrics.outcome(record.topic, "invalid" if error_type == "InvalidEvent"
                             else "dead_lettered")
        log.warning("dead-lettered %s[%d]@%d to %s after %d attempt(s): %s: %s", record.topic,
                    record.partition, record.offset, self.publisher.topic, ctx.attempt,
                    error_type, exc)
        if self.breaker.record(True):
            self._tripped()

    def _tripped(self) -> None:
        self.metrics.breaker(True)
        log.critical("dead-letter circuit breaker OPEN: %s; consumption stops and the "
                     "service reports unhealthy — check the handler or the producer",
                     self.breaker.reason)


@dataclass(frozen=True, slots=True)
class Parts:
    """What a pipeline is built from, loaded from settings before any I/O."""

    handler: Handler
    middleware: list[Middleware]
    sink: Sink
    security: KafkaSecurity
    #: Whether the handler gets a timer: the built-in store handler never
    #: awaits (emit only buffers), so a timer per message would cost time
    #: and bound nothing.
    bounded: bool
    #: Value formats hook: None for plain JSON.
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
                    security: KafkaSecurity | None = None) -> Pipeline:
    """Build (not start) the pipeline from settings, raising `ConfigError`
    before any I/O. The caller must `await processor.start()` before the
    first `process`. (With tracing on, the service builds the traced one
    instead: `consumer.gates.tracing.build_traced_processor`.)"""
    parts = load_parts(settings, metrics, security=security)
    return Pipeline(settings, metrics, handler=parts.handler, middleware=parts.middleware,
                    batcher=Batcher(parts.sink, settings, metrics), sink=parts.sink,
                    handler_timeout=parts.bounded, security=parts.security,
                    value_format=parts.value_format)
