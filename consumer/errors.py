"""One root exception; every class says whether trying again can help.

The retry loop branches on `retriable` only. Exceptions that are not ours are
classified by the retry policy's configurable lists (default: retriable).
"""

from __future__ import annotations


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


class DeadLetterError(ConsumerError):
    """The dead-letter topic could not be written: the message stays in flight."""

    retriable = True


class DeadLetterRefused(ConsumerError):
    """The dead-letter topic refuses even the smallest form of a record (its
    size limit is below the `dlq.*` headers alone): the message cannot be
    finished and stays in flight, its partition stuck — loudly, in the log,
    a metric and an alert."""


class CircuitOpenError(ConsumerError):
    """Too many messages were dead-lettered recently: stop consuming."""

