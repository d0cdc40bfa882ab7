"""The chain: run middleware folded around a handler endpoint.

A run middleware is any object (or async function) called as
`await mw(run, call_next)`; it may act before and after
`await call_next(run)`, call it once per part of the run, call it again, or
not at all. `build_chain` folds a list (outermost first) around an endpoint.

Handlers and user middleware are written per event (`Context`) or per run
(`RunContext`); the adapters here put them at the end of the one chain.
`compose` is the one place that decides the order of the gates.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from consumer.config import Settings, load_callable
from consumer.formats import ValueFormat
from consumer.gates.context import (
    BatchHandler,
    Context,
    Middleware,
    NextRun,
    RunContext,
    RunMiddleware,
    is_batch_handler,
)
from consumer.gates.correlation import Correlation
from consumer.gates.instruments import GateMetrics
from consumer.gates.retry import AttemptFailed, Retry, RetryPolicy
from consumer.gates.settle import Settle
from consumer.gates.timeout import Timeout
from consumer.gates.timing import Timing
from consumer.gates.validation import Segment, Validation
from consumer.types import Handler, Record, Sink


class Observer(Protocol):
    """What tracing plugs into the chain (`consumer.observability.spans`):
    a gate in front of all others, and hooks where a span starts or ends.
    Without one, none of this is called or imported."""

    def middleware(self) -> RunMiddleware:
        """The outermost gate: it sees every run first and every `done`."""

    def validated(self, segments: Sequence[Segment], started: int, ended: int,
                  size: int) -> None:
        """A run was validated, from `started` to `ended` (ns)."""

    def attempt(self, run: RunContext) -> AbstractContextManager[AttemptFailed | None]:
        """Around one handler attempt (its retries each get their own)."""

    def dead_letter(self, record: Record, exc: BaseException, attempts: int,
                    topic: str) -> AbstractContextManager[None]:
        """Around one dead-letter send to `topic`."""

    def sink(self, sink: Sink) -> Sink:
        """The sink the batcher writes to: `sink`, observed."""

    def close(self) -> None:
        """The pipeline closed: what is still open was left in flight."""


def compose(handler: Handler, middleware: Sequence[Middleware], *, settings: Settings,
            metrics: GateMetrics, settle: Settle, policy: RetryPolicy,
            timeout: float | None, observer: Observer | None = None,
            value_format: ValueFormat | None = None) -> tuple[bool, NextRun]:
    """The chain, outermost first:

        [tracing] → timing → validation → [singles] → settle → correlation
        → retry → [user middleware] → [timeout] → handler

    Validation cuts a run into parts; `singles` (for a per-event handler or
    user middleware, which see one event at a time) cuts them into records;
    settle routes each part's outcome and splits a run that failed as a
    whole; retry makes the attempts and keeps a successful one's rows. Returns
    whether the pipeline takes whole runs (a batch handler and no user
    middleware), and the chain."""
    takes_runs = is_batch_handler(handler) and not middleware
    gates: list[RunMiddleware] = []
    if observer is not None:
        gates.append(observer.middleware())
    gates.append(Timing(metrics))
    gates.append(Validation(settings.allow_unknown_types, value_format=value_format,
                            on_validated=None if observer is None else observer.validated))
    if not takes_runs:
        gates.append(singles)
    gates.append(settle)
    gates.append(Correlation())
    gates.append(Retry(policy, metrics, observe=None if observer is None else observer.attempt))
    gates.extend(per_event(mw) for mw in middleware)
    if timeout is not None:
        gates.append(Timeout(timeout))
    return takes_runs, build_chain(gates, endpoint(handler))


def build_chain(middleware: Sequence[RunMiddleware], endpoint: NextRun) -> NextRun:
    """`middleware[0]` is outermost: it sees the run first and last."""
    call = endpoint
    for mw in reversed(middleware):
        call = _bind(mw, call)
    return call


def _bind(mw: RunMiddleware, call_next: NextRun) -> NextRun:
    async def call(run: RunContext) -> None:
        await mw(run, call_next)

    return call


async def singles(run: RunContext, call_next: NextRun) -> None:
    """Each record alone down the rest of the chain: in front of per-event
    handlers and user middleware, which see one event at a time."""
    if len(run.records) == 1:
        await call_next(run)
        return
    for part in run.singles():
        await call_next(part)


def per_event(mw: Middleware) -> RunMiddleware:
    """A user middleware in the run chain (behind `singles`)."""

    async def call(run: RunContext, call_next: NextRun) -> None:
        async def forward(ctx: Context) -> None:
            await call_next(ctx.run)

        await mw(Context(run), forward)

    return call


def endpoint(handler: Handler | BatchHandler) -> NextRun:
    """The chain's end: the handler, per event or per run. What it emits is
    staged; the retry gate submits it when the attempt succeeded."""
    if is_batch_handler(handler):
        batch: BatchHandler = handler

        async def run_call(run: RunContext) -> None:
            await batch(run.events, run)

        return run_call
    per_record: Handler = handler

    async def event_call(run: RunContext) -> None:
        await per_record(run.events[0], Context(run))

    return event_call


def load_handler(spec: str) -> Handler:
    """`module:function` → the handler. Raises `ConfigError` naming
    CONSUMER_HANDLER when it cannot be imported or is not callable."""
    handler: Handler = load_callable(spec, "CONSUMER_HANDLER")
    return handler


def load_middleware(spec: str) -> Middleware:
    """`module:Name` → a middleware. A class (or any factory) is called with no
    arguments; an async function taking `(ctx, call_next)` is used as is.
    Raises `ConfigError` naming CONSUMER_MIDDLEWARE when it cannot be loaded."""
    target = load_callable(spec, "CONSUMER_MIDDLEWARE")
    if inspect.iscoroutinefunction(target):
        mw: Middleware = target
        return mw
    instance: Middleware = target()
    return instance
