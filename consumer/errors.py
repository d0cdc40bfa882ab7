"""One root exception; every class says whether trying again can help.

The retry loop branches on `retriable` only. Exceptions that are not ours are
classified by the retry policy's configurable lists (default: retriable).
`schemas` stands alone, so its `InvalidEvent` derives from its own root,
`schemas.errors.SchemaError`, which carries the same flag (never retriable).
"""

from __future__ import annotations

from collections.abc import Iterable


class ConsumerError(Exception):
    """Root of the service's errors."""

    retriable: bool = False

    def __init__(self, message: str, *, retriable: bool | None = None) -> None:
        super().__init__(message)
        if retriable is not None:
            self.retriable = retriable


class ConfigError(ConsumerError):
    """Settings are invalid; raised before connecting to anything."""


class TransientError(ConsumerError):
    """Worth another attempt: timeouts, throttling, a downstream briefly away."""

    retriable = True


class FatalError(ConsumerError):
    """Trying again gives the same answer: route to the dead-letter topic."""


class BrokerError(ConsumerError):
    """Kafka cannot be reached or refuses us (TLS, authentication) at start-up;
    the message is one line naming the broker, the identity and the cause."""

    retriable = True


class SinkError(ConsumerError):
    """A batch write failed; `retriable` tells retry from bisect."""

    retriable = True


class PartlyWritten(SinkError):
    """A batch write failed for some rows only (a sink that sends rows one by
    one, like the Kafka sink): `written` are the positions in the batch of the
    rows that were stored (acknowledged) and must not be sent again;
    `retriable` speaks of the others."""

    def __init__(self, message: str, written: Iterable[int], *, retriable: bool) -> None:
        super().__init__(message, retriable=retriable)
        self.written = tuple(sorted(set(written)))


class DeadLetterError(ConsumerError):
    """The dead-letter topic could not be written: the message stays in flight."""

    retriable = True


class CircuitOpenError(ConsumerError):
    """Too many messages were dead-lettered recently: stop consuming."""



class RegistryError(ConsumerError):
    """The schema registry cannot answer (unreachable, slow, refusing us, an
    error status). Retriable: the records that need it stay in flight. At
    start-up the message is the one line the service exits 1 with."""

    retriable = True


class Fenced(PartlyWritten):
    """Rows of partitions this member no longer owns — another member claimed
    them (a higher fencing epoch in the database), or the engine revoked
    them — were not written and must never be: `fenced` are their positions
    in the batch; `written` are the rows stored meanwhile. Retriable, so the
    messages of the fenced rows stay in flight (never dead-lettered, never
    done); the batcher does not write those rows again."""

    def __init__(self, message: str, written: Iterable[int], fenced: Iterable[int]) -> None:
        super().__init__(message, written, retriable=True)
        self.fenced = tuple(sorted(set(fenced)))
