"""What the Kafka commands (`produce`, `dlq`) share with the service: the
settings from `CONSUMER_*` variables, the same security, the same start-up
check and exit codes (2: a bad setting, named; 1: the broker refused or is
unreachable, one line)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import typer

from consumer.config import Settings, load_settings
from consumer.errors import BrokerError, ConfigError
from consumer.security import KafkaSecurity, check_broker, kafka_security


@dataclass(frozen=True, slots=True)
class Target:
    settings: Settings
    bootstrap: str
    security: KafkaSecurity


def kafka_target(bootstrap: str | None = None) -> Target:
    """Settings and security from the environment; `bootstrap` (an option)
    wins over CONSUMER_BOOTSTRAP_SERVERS. Exits 2 naming a bad setting."""
    try:
        settings = load_settings()
        security = kafka_security(settings)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    return Target(settings, bootstrap or settings.bootstrap_servers, security)


def check_or_exit(target: Target) -> None:
    """Dial the broker once (TLS, authentication); exit 1 with one line if it fails."""
    try:
        asyncio.run(check_broker(target.bootstrap, target.security))
    except BrokerError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
