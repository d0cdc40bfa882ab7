"""Kafka client security: the aiokafka arguments every client gets, the
start-up errors for bad certificates, and the one-line failure messages."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed

from consumer.config import load_settings
from consumer.errors import ConfigError
from consumer.security import PLAINTEXT, explain, kafka_security
from devtools.tls import CertificateAuthority

SECRET = "pw-Value-1"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path_factory.mktemp("ca"))


def test_plaintext_gives_no_tls_and_no_sasl() -> None:
    assert PLAINTEXT.options() == {"security_protocol": "PLAINTEXT"}
    assert kafka_security(load_settings()).options() == {"security_protocol": "PLAINTEXT"}


def test_sasl_ssl_gives_a_verifying_context_and_the_credentials(
        ca: CertificateAuthority) -> None:
    security = kafka_security(load_settings(
        security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="svc",
        sasl_password=SECRET, ssl_cafile=str(ca.cert)))
    options = security.options()
    context = options.pop("ssl_context")
    assert options == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                       "sasl_plain_username": "svc", "sasl_plain_password": SECRET}
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert SECRET not in repr(security)
    assert security.identity() == "user 'svc' (SCRAM-SHA-512)"


def test_mutual_tls_loads_the_client_certificate_and_can_skip_the_name_check(
        ca: CertificateAuthority) -> None:
    client = ca.issue("svc-client")
    security = kafka_security(load_settings(
        security_protocol="SSL", ssl_cafile=str(ca.cert), ssl_certfile=str(client.cert),
        ssl_keyfile=str(client.key), ssl_check_hostname=False))
    context = security.options()["ssl_context"]
    assert not context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED  # the chain is still verified
    assert "sasl_mechanism" not in security.options()


def test_a_file_that_is_not_pem_is_named(ca: CertificateAuthority, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="CONSUMER_SSL_CAFILE"):
        kafka_security(load_settings(security_protocol="SSL", ssl_cafile=str(junk)))
    other = ca.issue("other")
    with pytest.raises(ConfigError, match="CONSUMER_SSL_CERTFILE/CONSUMER_SSL_KEYFILE"):
        kafka_security(load_settings(security_protocol="SSL", ssl_cafile=str(ca.cert),
                                     ssl_certfile=str(ca.issue("mine").cert),
                                     ssl_keyfile=str(other.key)))  # not this cert's key


def test_failure_lines_name_broker_identity_and_cause(ca: CertificateAuthority) -> None:
    sasl = kafka_security(load_settings(
        security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-256", sasl_username="svc",
        sasl_password=SECRET, ssl_cafile=str(ca.cert)))
    wrong = SaslAuthenticationFailed("Authentication failed: invalid credentials")
    assert explain(wrong, "b:9093", sasl) == (
        "authentication failed for user 'svc' (SCRAM-SHA-256) at b:9093: "
        "Authentication failed: invalid credentials")
    untrusted = ssl.SSLCertVerificationError(1, "certificate verify failed")
    untrusted.verify_message = "self-signed certificate in certificate chain"
    assert explain(untrusted, "b:9093", sasl) == (
        "TLS handshake with b:9093 failed: the broker's certificate is not trusted "
        "(self-signed certificate in certificate chain); check CONSUMER_SSL_CAFILE")
    closed = KafkaConnectionError("Connection at b:9093 closed")
    assert "does it require a client certificate" in explain(closed, "b:9093", sasl)
    refused = ConnectionRefusedError(111, "Connect call failed")
    assert explain(refused, "b:9093", PLAINTEXT) == (
        "cannot connect to Kafka at b:9093: Connect call failed")
    for line in (explain(e, "b:9093", sasl) for e in (wrong, untrusted, closed, refused)):
        assert SECRET not in line
        assert "\n" not in line


def test_an_encrypted_key_needs_its_password(ca: CertificateAuthority, tmp_path: Path) -> None:
    client = ca.issue("svc-encrypted")
    encrypted = tmp_path / "encrypted.key"
    subprocess.run(["openssl", "pkcs8", "-topk8", "-in", str(client.key), "-out", str(encrypted),
                    "-passout", f"pass:{SECRET}"], check=True, capture_output=True)
    base = {"security_protocol": "SSL", "ssl_cafile": str(ca.cert),
            "ssl_certfile": str(client.cert), "ssl_keyfile": str(encrypted)}
    with pytest.raises(ConfigError, match="CONSUMER_SSL_KEYFILE"):  # and no terminal prompt
        kafka_security(load_settings(None, **base))
    with pytest.raises(ConfigError, match="CONSUMER_SSL_KEY_PASSWORD") as caught:
        kafka_security(load_settings(None, **base, ssl_key_password="wrong"))
    assert "wrong" not in str(caught.value)
    assert kafka_security(load_settings(None, **base, ssl_key_password=SECRET)).client_certificate
