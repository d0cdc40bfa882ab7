"""How every Kafka client of the service and the CLI connects: TLS and SASL.

`kafka_security(settings)` is the one place that turns the `CONSUMER_SECURITY_*`,
`CONSUMER_SASL_*` and `CONSUMER_SSL_*` settings into aiokafka's connection
arguments (including the `ssl.SSLContext`); the consumer, the dead-letter
producer, the Kafka sink, `consumer produce`, `consumer dlq` and the admin
client used for topic creation all take a `KafkaSecurity` from it.

`check_broker` dials the bootstrap servers once, through the TLS handshake and
SASL authentication, and turns what went wrong into one line (which broker,
which user, why) instead of aiokafka's "Unable to bootstrap" after logging
each attempt. Start-up calls it before starting any client (they are built,
not connected), so a wrong password or an untrusted certificate exits at once,
with no retry storm.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from typing import Any

from aiokafka.conn import create_conn
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    UnsupportedSaslMechanismError,
)
from pydantic import SecretStr

from consumer.config import SecurityProtocol, Settings, kafka_topic
from consumer.errors import BrokerError, ConfigError


@dataclass(frozen=True, slots=True)
class KafkaSecurity:
    """Resolved security settings; `options()` are aiokafka keyword arguments."""

    protocol: SecurityProtocol = SecurityProtocol.PLAINTEXT
    mechanism: str | None = None
    username: str | None = None
    password: SecretStr | None = field(default=None, repr=False)
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)
    client_certificate: bool = False

    def options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"security_protocol": self.protocol.value}
        if self.ssl_context is not None:
            opts["ssl_context"] = self.ssl_context
        if self.mechanism is not None:
            opts["sasl_mechanism"] = self.mechanism
            opts["sasl_plain_username"] = self.username
            opts["sasl_plain_password"] = (self.password.get_secret_value()
                                           if self.password is not None else None)
        return opts

    def identity(self) -> str:
        """Who we connect as, for messages: never the secret itself."""
        if self.mechanism is not None:
            return f"user {self.username!r} ({self.mechanism})"
        if self.client_certificate:
            return "the client certificate in CONSUMER_SSL_CERTFILE"
        return "no client certificate" if self.ssl_context is not None else "no credentials"


PLAINTEXT = KafkaSecurity()


def kafka_security(settings: Settings) -> KafkaSecurity:
    """Build the security every client uses. `Settings` already checked the
    combinations and that the files are readable; this loads them, and raises
    `ConfigError` naming the setting when a CA, certificate or key is not
    valid PEM (or the key does not match the certificate)."""
    context = None
    if settings.security_protocol in (SecurityProtocol.SSL, SecurityProtocol.SASL_SSL):
        context = _ssl_context(settings)
    mechanism = settings.sasl_mechanism.value if settings.sasl_mechanism else None
    return KafkaSecurity(settings.security_protocol, mechanism, settings.sasl_username,
                         settings.sasl_password, context,
                         client_certificate=settings.ssl_certfile is not None)


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    try:
        context.load_verify_locations(cafile=settings.ssl_cafile)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"CONSUMER_SSL_CAFILE: cannot load {settings.ssl_cafile}: "
                          f"{_reason(exc)}") from None
    if settings.ssl_certfile is not None:
        password = settings.ssl_key_password
        try:
            # "" rather than None: OpenSSL would otherwise prompt on the
            # terminal for the passphrase of an encrypted key.
            context.load_cert_chain(
                settings.ssl_certfile, settings.ssl_keyfile,
                password=password.get_secret_value() if password is not None else "")
        except (ssl.SSLError, OSError) as exc:
            names = "CONSUMER_SSL_CERTFILE/CONSUMER_SSL_KEYFILE" + (
                "/CONSUMER_SSL_KEY_PASSWORD" if password is not None else "")
            raise ConfigError(f"{names}: cannot load the client certificate and key: "
                              f"{_reason(exc)}") from None
    # The chain is always verified; only the name check can be turned off
    # (brokers reached by an address their certificate does not list).
    context.check_hostname = settings.ssl_check_hostname
    return context


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return exc.verify_message or str(exc)
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, KafkaError) and exc.args and isinstance(exc.args[0], str):
        return exc.args[0]  # the broker's own words, without the error-code prefix
    return str(exc) or type(exc).__name__


async def check_broker(bootstrap_servers: str, security: KafkaSecurity, *,
                       connect_timeout: float = 15.0) -> None:
    """Return once one bootstrap server completed the TLS handshake and SASL
    authentication; else raise `BrokerError` with one line about the first
    server's failure. Never retries: a start-up failure is the supervisor's
    to back off and restart."""
    first: str | None = None
    for host, port in _servers(bootstrap_servers):
        try:
            conn = await asyncio.wait_for(
                create_conn(host, port, client_id="consumer-check",
                            request_timeout_ms=int(connect_timeout * 1000),
                            **security.options()),
                connect_timeout)
        except (OSError, KafkaError, TimeoutError) as exc:
            first = first or explain(exc, f"{host}:{port}", security)
            continue
        conn.close()
        return
    raise BrokerError(first or f"no bootstrap server in {bootstrap_servers!r}")


def explain(exc: BaseException, broker: str, security: KafkaSecurity) -> str:  # noqa: PLR0911 - one answer per cause
    """One line for a failed connection: what failed, where, as whom, why."""
    who = security.identity()
    if isinstance(exc, SaslAuthenticationFailed):
        return f"authentication failed for {who} at {broker}: {_reason(exc)}"
    if isinstance(exc, UnsupportedSaslMechanismError):
        return f"broker {broker} refused {who}: {_reason(exc)}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"TLS handshake with {broker} failed: the broker's certificate is not "
                f"trusted ({_reason(exc)}); check CONSUMER_SSL_CAFILE"
                + (" and CONSUMER_SSL_CHECK_HOSTNAME" if "mismatch" in _reason(exc) else ""))
    if isinstance(exc, ssl.SSLError):
        return (f"TLS handshake with {broker} failed ({who}): {_reason(exc)}; "
                "check CONSUMER_SSL_CERTFILE and CONSUMER_SECURITY_PROTOCOL")
    if isinstance(exc, KafkaConnectionError) and security.ssl_context is not None:
        # A broker that rejects our certificate drops the connection during
        # the handshake (TLS 1.3: just after it); aiokafka only sees it closed.
        closed = f"broker {broker} closed the connection during the TLS handshake: "
        if security.client_certificate:
            return (closed + "it did not accept the client certificate "
                    "(CONSUMER_SSL_CERTFILE): expired, or not signed by a CA it trusts?")
        return (closed + "does it require a client certificate (CONSUMER_SSL_CERTFILE) "
                "or another CONSUMER_SECURITY_PROTOCOL?")
    if isinstance(exc, TimeoutError):
        return f"no answer from Kafka at {broker}; is CONSUMER_SECURITY_PROTOCOL right?"
    return f"cannot connect to Kafka at {broker}: {_reason(exc)}"


#: ACL refusals: no retry cures them, so they stop the service with one line.
NOT_AUTHORIZED = (TopicAuthorizationFailedError, GroupAuthorizationFailedError,
                  ClusterAuthorizationFailedError)


def not_authorized(exc: BaseException, settings: Settings,
                   security: KafkaSecurity) -> str | None:
    """One line for an ACL refusal at start-up, saying what the principal
    needs; None for any other error."""
    if not isinstance(exc, NOT_AUTHORIZED):
        return None
    # A producer without WRITE on any topic is refused its producer id: that
    # surfaces as a cluster-level refusal, though WRITE on a topic is the fix.
    what = f" ({', '.join(map(str, exc.args))})" if exc.args else ""
    needs = (f"READ on topic(s) {', '.join(settings.topics)} and group {settings.group_id}, "
             f"WRITE on {settings.dead_letter_topic}")
    if settings.sink_url.startswith("kafka:"):
        needs += f" and {kafka_topic(settings.sink_url)}"
    return f"{security.identity()} is not authorized: {type(exc).__name__}{what}; it needs {needs}"


def _servers(bootstrap_servers: str) -> list[tuple[str, int]]:
    """(host, port) pairs; `Settings` checked the form."""
    out = []
    for item in bootstrap_servers.split(","):
        host, _, port = item.strip().rpartition(":")
        out.append((host.strip("[]"), int(port)) if host else (port, 9092))
    return out
