"""A broker that refuses us at start-up — wrong password, a broker
certificate we do not trust, an expired client certificate — is one clear
error line and exit 1: no retries, no traceback, no secret."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from devtools.harness import Service, create_topics
from devtools.tls import CertificateAuthority
from tests.integration.security.support import Secured

pytestmark = pytest.mark.integration


def refused_log(settings: dict[str, str], *, default_linger: bool = False) -> str:
    """Run the service until it exits 1, at once and without a traceback;
    return its whole log. With `default_linger`, the service keeps its own
    CONSUMER_METRICS_LINGER (the harness sets 0): a refusal at start-up must
    still exit at once."""
    svc = Service(**({"topics": "refused", "sink_url": "none", "log_level": "INFO"} | settings))
    if default_linger:
        del svc.env["CONSUMER_METRICS_LINGER"]
    svc.start()
    assert svc.proc is not None
    try:
        began = time.monotonic()
        assert svc.proc.wait(60) == 1, svc.log_tail()
        # Well under the default linger (35 s): nothing waited for a scrape.
        assert time.monotonic() - began < 25, svc.log_tail()
    finally:
        if svc.alive:
            svc.kill()
    log = svc.log_tail(1_000_000)
    assert "Traceback" not in log
    assert "serving /metrics" not in log
    return log


def refused(settings: dict[str, str], *, lines: int = 1,
            default_linger: bool = False) -> tuple[list[str], str]:
    """`refused_log`, and its error lines: exactly `lines` of them."""
    log = refused_log(settings, default_linger=default_linger)
    errors = [line for line in log.splitlines() if '"level":"error"' in line
              or '"level":"critical"' in line]
    assert len(errors) == lines, log  # no retry storm, no echo from the client library
    return errors, log


def test_wrong_password_is_one_line_naming_user_and_broker(secured: Secured) -> None:
    wrong = "not-" + secured.passwords["svc"]
    errors, log = refused(secured.sasl_settings("svc", password=wrong))
    assert (f"cannot run: authentication failed for user 'svc' (SCRAM-SHA-512) at "
            f"{secured.bootstrap}: ") in errors[0]
    assert errors[0].endswith("Authentication failed during authentication due to invalid "
                              'credentials with SASL mechanism SCRAM-SHA-512"}')
    assert wrong not in log


def test_untrusted_broker_certificate_is_one_line(secured: Secured, tmp_path: Path) -> None:
    other = CertificateAuthority.create(tmp_path, "some-other-ca")
    settings = secured.sasl_settings("svc") | {"ssl_cafile": str(other.cert)}
    errors, log = refused(settings)
    assert (f"cannot run: TLS handshake with {secured.bootstrap} failed: the broker's "
            "certificate is not trusted (unable to get local issuer certificate); "
            "check CONSUMER_SSL_CAFILE") in errors[0]
    assert secured.passwords["svc"] not in log


def test_expired_client_certificate_is_one_line(secured: Secured) -> None:
    expired = secured.broker.client_certificate("svc-expired", days=-1)
    errors, _ = refused({
        "bootstrap_servers": secured.broker.mtls_bootstrap, "security_protocol": "SSL",
        "ssl_cafile": str(secured.broker.ca.cert), "ssl_certfile": str(expired.cert),
        "ssl_keyfile": str(expired.key)})
    assert (f"cannot run: broker {secured.broker.mtls_bootstrap} closed the connection during "
            "the TLS handshake: it did not accept the client certificate "
            "(CONSUMER_SSL_CERTFILE): expired, or not signed by a CA it trusts?") in errors[0]


def test_a_principal_without_acls_is_told_what_it_needs(secured: Secured) -> None:
    # aiokafka logs the refused producer id itself: that line, then ours.
    errors, _ = refused(secured.sasl_settings("nobody") | {"group_id": "g-nobody"}, lines=2)
    assert errors[-1].endswith(
        "cannot run: user 'nobody' (SCRAM-SHA-512) is not authorized: "
        "ClusterAuthorizationFailedError; it needs READ on topic(s) refused and group "
        'g-nobody, WRITE on refused.dlq"}')


async def test_missing_read_on_the_group_exits_at_once_saying_what_it_needs(
        secured: Secured) -> None:
    topic, dlq = await create_topics(secured.bootstrap, 1, security=secured.admin)
    group = f"g-{uuid.uuid4().hex[:8]}"
    secured.broker.grant("svc", ["Read"], topic=topic)  # nothing on the group
    secured.broker.grant("svc", ["Write"], topic=dlq)
    errors, _ = refused(secured.sasl_settings("svc") | {"topics": topic, "group_id": group},
                        default_linger=True)
    assert "cannot run: user 'svc' (SCRAM-SHA-512) is not authorized: " \
           "GroupAuthorizationFailedError" in errors[0]
    assert errors[0].endswith(f"it needs READ on topic(s) {topic} and group {group}, "
                              f'WRITE on {dlq}"}}')



async def test_missing_read_on_the_topic_exits_at_once_saying_what_it_needs(
        secured: Secured) -> None:
    # The broker answers the topic's metadata with TOPIC_AUTHORIZATION_FAILED;
    # aiokafka then assigns nothing and raises nothing: without a check the
    # service would idle, healthy, forever.
    topic, dlq = await create_topics(secured.bootstrap, 1, security=secured.admin)
    group = f"g-{uuid.uuid4().hex[:8]}"
    secured.broker.grant("svc", ["Read"], group=group)  # nothing on the topic
    secured.broker.grant("svc", ["Write"], topic=dlq)
    log = refused_log(secured.sasl_settings("svc") | {"topics": topic, "group_id": group},
                      default_linger=True)
    ours = [line for line in log.splitlines()
            if '"level":"error"' in line and '"logger":"consumer' in line]
    # aiokafka logs the refusal (and may log a coordinator not yet ready) on
    # its own; the service says it once, what is missing included.
    assert len(ours) == 1, log
    assert "cannot run: user 'svc' (SCRAM-SHA-512) is not authorized: " \
           f"TopicAuthorizationFailedError ({topic})" in ours[0]
    assert ours[0].endswith(f"it needs READ on topic(s) {topic} and group {group}, "
                            f'WRITE on {dlq}"}}')
