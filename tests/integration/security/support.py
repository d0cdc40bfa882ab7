"""What the security tests share: the secured broker their `secured`
fixture (conftest.py) yields."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from consumer.security import KafkaSecurity
from devtools.secure_kafka import SecureKafka


@dataclass(frozen=True)
class Secured:
    """The running secured broker and the SCRAM users' passwords."""

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
