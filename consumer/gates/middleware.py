"""Middleware gate: a chain around the handler, each middleware wrapping `next`.

A middleware is any object (or async function) called as
`await mw(ctx, call_next)`; it may act before and after `await call_next(ctx)`,
retry it, or raise. `build_chain` folds a list (outermost first) around an
endpoint; `consumer.pipeline` is the one place that decides the list.

The built-ins live here except `RetryMiddleware` (`consumer.gates.retry`).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from consumer.errors import ConfigError, TransientError
from consumer.formats import ValueFormat, prepare_until_ready
from consumer.gates.context import Context, Next
from consumer.gates.instruments import GateMetrics
from consumer.observability.logging import correlation_id
from consumer.types import Handler

log = logging.getLogger("consumer.gates")


class Middleware(Protocol):
    async def __call__(self, ctx: Context, call_next: Next) -> None: ...


def build_chain(middleware: Sequence[Middleware], endpoint: Next) -> Next:
    """`middleware[0]` is outermost: it sees the message first and last."""
    call: Next = endpoint
    for mw in reversed(middleware):
        call = _bind(mw, call)
    return call


def _bind(mw: Middleware, call_next: Next) -> Next:
    async def call(ctx: Context) -> None:
        await mw(ctx, call_next)

    return call


def handler_endpoint(handler: Handler) -> Next:
    """The chain's end: one attempt of the handler. What it emitted is
    submitted only when it returns; a failed attempt's rows are dropped."""

    async def call(ctx: Context) -> None:
        ctx.staged = []
        await handler(ctx.event, ctx)
        ctx.submit_staged()

    return call


def load_middleware(spec: str) -> Middleware:
    """`module:Name` → a middleware. A class (or any factory) is called with no
    arguments; an async function taking `(ctx, call_next)` is used as is.
    Raises `ConfigError` naming CONSUMER_MIDDLEWARE when it cannot be loaded."""
    module, _, name = spec.partition(":")
    try:
        target = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"CONSUMER_MIDDLEWARE: cannot load {spec!r}: {exc}") from exc
    if inspect.iscoroutinefunction(target):
        mw: Middleware = target
        return mw
    if not callable(target):
        raise ConfigError(f"CONSUMER_MIDDLEWARE: {spec!r} is not callable")
    instance: Middleware = target()
    return instance


class ErrorBoundary:
    """Outermost: nothing escapes as an exception. An error that got past the
    retry gate becomes the dead-letter decision — `ctx.error` is set and the
    pipeline dead-letters the message. Cancellation of the worker passes
    through; a `CancelledError` the handler raised on its own (it awaited a
    future someone else cancelled) is a handler failure like any other."""

    async def __call__(self, ctx: Context, call_next: Next) -> None:
        try:
            await call_next(ctx)
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is None or task.cancelling():
                raise
            ctx.failed(exc)
            ctx.error = exc
        except Exception as exc:  # noqa: BLE001 - this is the boundary
            ctx.failed(exc)
            ctx.error = exc


class MetricsMiddleware:
    """Time spent in the chain (validation, handler, retries)."""

    def __init__(self, metrics: GateMetrics) -> None:
        self._metrics = metrics

    async def __call__(self, ctx: Context, call_next: Next) -> None:
        started = time.perf_counter()
        try:
            await call_next(ctx)
        finally:
            self._metrics.processing(ctx.topic, time.perf_counter() - started)
            self._metrics.attempts(ctx.attempt)


class ValidationMiddleware:
    """Bytes → event (`schemas.validate`). `InvalidEvent` is never retriable,
    and this runs outside the retry gate, so invalid records go straight to
    the dead-letter topic. With a `value_format` (consumer.formats) the
    writer's schema is fetched first (retried while the registry cannot
    answer: the message stays in flight) and the format decodes."""

    def __init__(self, allow_unknown: bool = False, *,
                 value_format: ValueFormat | None = None) -> None:
        from consumer.gates.runs import validate_value

        self._validate: Callable[..., Any] = validate_value
        self._allow_unknown = allow_unknown
        # Value formats hook: the format decodes and validates instead.
        self._format = value_format
        if value_format is not None:
            decode = value_format.decode

            def decoded(value: Any, *, allow_unknown: bool = False) -> Any:
                return decode(value)  # the format knows allow_unknown itself

            self._validate = decoded

    async def _prepare(self, ctx: Context) -> None:
        if self._format is not None:  # value formats hook
            await prepare_until_ready(self._format, (ctx.record.value,))

    async def __call__(self, ctx: Context, call_next: Next) -> None:
        if self._format is not None:  # value formats hook (no await at all for json)
            await prepare_until_ready(self._format, (ctx.record.value,))
        ctx.event = self._validate(ctx.record.value, allow_unknown=self._allow_unknown)
        await call_next(ctx)


class LoggingMiddleware:
    """Structured logging with the event id as correlation id (`extra` fields
    and the `correlation_id` context variable)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or log

    async def __call__(self, ctx: Context, call_next: Next) -> None:
        event_id = getattr(ctx.event, "id", None)
        token = correlation_id.set(None if event_id is None else str(event_id))
        extra = {"correlation_id": event_id, "topic": ctx.topic, "partition": ctx.partition,
                 "offset": ctx.offset}
        try:
            if self._log.isEnabledFor(logging.DEBUG):
                self._log.debug("handling event %s", event_id, extra=extra)
            await call_next(ctx)
        except Exception as exc:
            self._log.warning("event %s failed after %d attempt(s): %s: %s", event_id,
                              ctx.attempt, type(exc).__name__, exc,
                              extra={**extra, "attempts": ctx.attempt})
            raise
        finally:
            correlation_id.reset(token)


class TimeoutMiddleware:
    """Per-attempt time limit. A timeout is a `TransientError`: the retry gate
    decides whether there is another attempt."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def __call__(self, ctx: Context, call_next: Next) -> None:
        try:
            async with asyncio.timeout(self.seconds):
                await call_next(ctx)
        except TimeoutError as exc:
            raise TransientError(f"handler timed out after {self.seconds:g}s") from exc


def on_retry_counter(metrics: GateMetrics) -> Callable[[Context], None]:
    def count(ctx: Context) -> None:
        metrics.retry(ctx.topic)

    return count

