"""Sinks: where emitted rows go, all behind the `Sink` Protocol
(`consumer.types.Sink`), chosen by `CONSUMER_SINK_URL`.

| URL | sink | idempotent |
|---|---|---|
| `postgresql://…`, `postgres://…` | `PostgresSink` (COPY + ON CONFLICT DO NOTHING) | yes |
| `sqlite:///path.db` | `SqliteSink` (WAL, INSERT OR IGNORE) | yes |
| `kafka://topic` | `KafkaSink` (idempotent producer, key kept) | at-least-once |
| `http://…`, `https://…` | `HttpSink` (one POST of a JSON array per batch) | at-least-once |
| `none` | `NullSink` | — |

Only `PostgresSink` takes `CONSUMER_DELIVERY=exactly_once` (`Settings`
refuses it for the others, saying why).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from consumer.config import Delivery, kafka_topic
from consumer.errors import ConfigError
from consumer.masking import mask_url
from consumer.sinks.base import Row
from consumer.types import Sink

if TYPE_CHECKING:
    from consumer.observability.metrics import Metrics
    from consumer.security import KafkaSecurity

__all__ = ["Row", "open_sink"]


def _postgres(url: str, settings: Any) -> Sink:
    from consumer.sinks.postgres import PostgresSink, load_apply

    if settings is None:
        return PostgresSink(url)
    exactly_once = settings.delivery is Delivery.EXACTLY_ONCE
    return PostgresSink(url, group=settings.group_id if exactly_once else None,
                        apply=load_apply(settings.sink_apply))


def open_sink(url: str, *, settings: Any = None, metrics: Metrics | None = None,
              security: KafkaSecurity | None = None) -> Sink:
    """Build (not open) the sink `url` names. Raises `ConfigError` naming
    CONSUMER_SINK_URL for an unknown scheme or a malformed URL; connects to
    nothing, so the service can validate before start-up."""
    url = url.strip()
    if url == "none":
        from consumer.sinks.none import NullSink

        return NullSink()
    if url.startswith(("postgresql://", "postgres://")):
        return _postgres(url, settings)
    if url.startswith("sqlite:"):
        from consumer.sinks.sqlite import SqliteSink, sqlite_path

        return SqliteSink(sqlite_path(url))
    if url.startswith("kafka:"):
        from consumer.security import PLAINTEXT, kafka_security
        from consumer.sinks.kafka import KafkaSink

        topic = kafka_topic(url)
        if settings is None:
            return KafkaSink(topic, "localhost:9092", security=PLAINTEXT)
        return KafkaSink(topic, settings.bootstrap_servers, client_id=f"{settings.client_id}-sink",
                         security=security or kafka_security(settings),
                         compression=settings.producer_compression)
    if url.startswith(("http://", "https://")) and len(url.split("://", 1)[1]) > 0:
        from consumer.sinks.http import HttpSink

        return HttpSink(url)
    raise ConfigError(
        f"CONSUMER_SINK_URL: unsupported sink {mask_url(url)!r}; expected postgresql://…, "
        "sqlite:///path.db, kafka://topic, http(s)://… or none")
