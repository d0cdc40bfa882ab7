"""The secured broker, started once for the security tests only (it costs a
few seconds): SASL_SSL with SCRAM users, a mutual-TLS listener, ACLs on.

Always a local process from the Maven jars: `KAFKA_BOOTSTRAP_SERVERS` and
testcontainers provide the plaintext broker only, and these tests need to
make users, certificates and ACLs.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from consumer.security import KafkaSecurity
from devtools.secure_kafka import SecureKafka


@dataclass(frozen=True)
class Secured:
    broker: SecureKafka
    passwords: dict[str, str] = field(repr=False)

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    @property
    def admin(self) -> KafkaSecurity:
        return self.broker.admin_security()

    def sasl_settings(self, user: str, *, mechanism: str = "SCRAM-SHA-512",
                      password: str | None = None, password_file: Path | None = None,
                      ) -> dict[str, str]:
        """`Service` keyword settings for SASL_SSL as `user`."""
        settings = {"bootstrap_servers": self.bootstrap, "security_protocol": "SASL_SSL",
                    "sasl_mechanism": mechanism, "sasl_username": user,
                    "ssl_cafile": str(self.broker.ca.cert)}
        if password_file is not None:
            settings["sasl_password_file"] = str(password_file)
        else:
            settings["sasl_password"] = password or self.passwords[user]
        return settings


@pytest.fixture(scope="session")
def secured() -> Iterator[Secured]:
    # `nobody` is never granted anything.
    passwords = {user: secrets.token_urlsafe(18) for user in ("svc", "cli", "nobody")}
    broker = SecureKafka(users=passwords)
    try:
        broker.start()
        yield Secured(broker, passwords)
    finally:
        broker.stop()
