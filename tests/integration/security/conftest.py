"""The secured broker, started once for the security tests only (it costs a
few seconds): SASL_SSL with SCRAM users, a mutual-TLS listener, ACLs on.

Always a local process from the Maven jars: `KAFKA_BOOTSTRAP_SERVERS` and
testcontainers provide the plaintext broker only, and these tests need to
make users, certificates and ACLs.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from devtools.secure_kafka import SecureKafka
from tests.integration.security.support import Secured


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
