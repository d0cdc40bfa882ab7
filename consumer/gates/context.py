"""`Context`: what a handler (and each middleware) learns about its record."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

from consumer.sinks.base import Row
from consumer.types import Headers, Record

if TYPE_CHECKING:
    from consumer.gates.http import HttpClient

#: Submits a row to the batcher; returns the row's write future (never blocks).
Submit: TypeAlias = Callable[[Row], "asyncio.Future[None]"]


@dataclass(slots=True, eq=False)
class Context:
    """One message's journey through the chain; a fresh one per record.

    Handlers read the coordinates, `attempt` (1-based), call `emit(event)` to
    send a row to the sink and `http.request(...)` for rate-limited downstream
    calls. Middleware may read `event` once validation set it.
    """

    record: Record
    submit: Submit | None = None
    http: HttpClient | None = None
    event: Any = None
    attempt: int = 1
    #: Write futures of the rows the successful attempt emitted: the message
    #: is done only when they all resolve.
    pending: list[asyncio.Future[None]] = field(default_factory=list)
    #: Rows emitted by the attempt under way: submitted when it succeeds,
    #: dropped when it fails, so a failed attempt writes nothing.
    staged: list[Row] = field(default_factory=list)
    #: Wall-clock seconds of the first and the latest failed attempt.
    first_failure: float | None = None
    last_failure: float | None = None
    #: The error the chain gave up with (set by the error boundary).
    error: BaseException | None = None
    #: Free-form space for user middleware.
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def topic(self) -> str:
        value: str = self.record.topic
        return value

    @property
    def partition(self) -> int:
        value: int = self.record.partition
        return value

    @property
    def offset(self) -> int:
        value: int = self.record.offset
        return value

    @property
    def key(self) -> bytes | None:
        value: bytes | None = self.record.key
        return value

    @property
    def headers(self) -> Headers:
        value: Headers = self.record.headers
        return value

    @property
    def timestamp(self) -> int:
        """The record's timestamp, milliseconds since the epoch."""
        value: int = self.record.timestamp
        return value

    def emit(self, event: Any = None) -> None:
        """Send `event` (default: this message's event) to the sink as a `Row`
        with this record's coordinates, once this attempt succeeds (a failed
        attempt's rows are never written). Does not wait for the write: the
        pipeline calls `done` once every emitted row is written."""
        if self.submit is None:
            raise RuntimeError("emit() needs a sink and must be called before the handler "
                               "returns")
        self.staged.append(Row.from_event(self.event if event is None else event, self.record))

    def submit_staged(self) -> None:
        """The attempt succeeded: hand its rows to the batcher. Raises
        `ConsumerError` (retriable) when the batcher is not running."""
        staged, self.staged = self.staged, []
        if staged and self.submit is not None:
            self.pending.extend(self.submit(row) for row in staged)

    def failed(self, exc: BaseException) -> None:
        """Note the time of a failed attempt (the error itself is the caller's)."""
        now = time.time()
        if self.first_failure is None:
            self.first_failure = now
        self.last_failure = now


#: The rest of the chain, as seen by a middleware.
Next: TypeAlias = Callable[[Context], Awaitable[None]]
