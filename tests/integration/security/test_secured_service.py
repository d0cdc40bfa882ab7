"""The whole service against the secured broker, with only the ACLs it needs:
READ on its topic and group, WRITE on the dead-letter topic (and on the sink
topic when it writes to Kafka)."""

from __future__ import annotations

import asyncio
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest

from consumer.masking import mask_url
from devtools.harness import (
    Service,
    committed_all,
    committed_offsets,
    create_topics,
    produce,
    read_topic,
    stored_ids,
    wait_until,
)
from devtools.kafka import create_topics as create_kafka_topics
from schemas.samples import invalid_samples
from tests.integration.security.support import Secured
from tests.integration.sinks.dbs import fresh_database
from tests.support.kafka import event_value, produce_values

pytestmark = pytest.mark.integration


def with_password(dsn: str) -> tuple[str, str]:
    """`dsn` with a password (the test server trusts local users and ignores
    it; a server that needs one already has it); returns (dsn, password)."""
    parts = urlsplit(dsn)
    if parts.password:
        return dsn, parts.password
    password = f"pg-{uuid.uuid4().hex}"
    netloc = f"{parts.username}:{password}@{parts.hostname}:{parts.port}"
    return parts._replace(netloc=netloc).geturl(), password


def probe_body(svc: Service, path: str) -> object:
    url = f"http://127.0.0.1:{svc.env['CONSUMER_HTTP_PORT']}/{path}"
    with urllib.request.urlopen(url, timeout=2) as resp:
        return orjson.loads(resp.read())


async def test_full_service_over_sasl_ssl_scram_512_with_least_privilege_leaks_no_secret(
        secured: Secured, pg_dsn: str, tmp_path: Path) -> None:
    bootstrap, admin = secured.bootstrap, secured.admin
    db_dsn = await fresh_database(pg_dsn, "sec")
    topic, dlq = await create_topics(bootstrap, 3, security=admin)
    group = f"g-{uuid.uuid4().hex[:8]}"
    secured.broker.grant("svc", ["Read"], topic=topic, group=group)
    secured.broker.grant("svc", ["Write"], topic=dlq)
    traffic = await produce(bootstrap, topic, 300, invalid_every=10, security=admin)
    dsn, pg_password = with_password(db_dsn)
    password_file = tmp_path / "kafka-password"
    password_file.write_text(secured.passwords["svc"] + "\n")  # as `echo` writes it
    svc = Service(**secured.sasl_settings("svc", password_file=password_file), topics=topic,
                  group_id=group, sink_url=dsn, log_level="DEBUG", commit_interval="0.2").start()
    try:
        async def all_stored() -> bool:
            return set(await stored_ids(dsn)) == traffic.valid

        async def all_committed() -> bool:
            return await committed_all(bootstrap, group, topic, security=admin)

        await wait_until(all_stored, 90, "every valid event stored", svc)
        await wait_until(all_committed, 60, "every offset committed", svc)
        metrics = svc.metrics()
        # They say ok or not, and readiness why not: nothing about the setup.
        assert probe_body(svc, "healthz") == {"ok": True}
        assert probe_body(svc, "readyz") == {"ok": True, "reasons": []}
        assert svc.terminate() == 0
    finally:
        if svc.alive:
            svc.kill()
    letters = await read_topic(bootstrap, dlq, idle=1.0, security=admin)
    assert len(letters) == traffic.invalid
    log = svc.log_tail(50_000_000)
    assert len(log.splitlines()) > 10  # the run was logged (DEBUG): the greps below mean something
    assert mask_url(dsn) in log  # the DSN is shown, with its password masked
    for secret in (secured.passwords["svc"], pg_password):
        assert secret not in log
        assert secret not in metrics


async def test_mutual_tls_without_sasl_consumes_dead_letters_and_writes_the_kafka_sink(
        secured: Secured) -> None:
    bootstrap, admin, broker = secured.bootstrap, secured.admin, secured.broker
    topic, dlq = await create_topics(bootstrap, 2, security=admin)
    out = f"{topic}.out"
    await create_kafka_topics(bootstrap, {out: 1}, security=admin)
    group = f"g-{uuid.uuid4().hex[:8]}"
    principal = f"svc-mtls-{uuid.uuid4().hex[:6]}"  # the certificate's CN
    cert = broker.client_certificate(principal)
    broker.grant(principal, ["Read"], topic=topic, group=group)
    broker.grant(principal, ["Write"], topic=dlq)
    broker.grant(principal, ["Write"], topic=out)
    traffic = await produce(bootstrap, topic, 100, invalid_every=10, security=admin)
    svc = Service(bootstrap_servers=broker.mtls_bootstrap, security_protocol="SSL",
                  ssl_cafile=str(broker.ca.cert), ssl_certfile=str(cert.cert),
                  ssl_keyfile=str(cert.key), topics=topic, group_id=group,
                  sink_url=f"kafka://{out}", commit_interval="0.2").start()
    try:
        async def all_committed() -> bool:
            return await committed_all(bootstrap, group, topic, security=admin)

        await wait_until(all_committed, 90, "every offset committed", svc)
        assert svc.terminate() == 0
    finally:
        if svc.alive:
            svc.kill()
    written = await read_topic(bootstrap, out, idle=1.0, security=admin)
    assert {orjson.loads(r.value)["id"] for r in written} == traffic.valid
    assert len(await read_topic(bootstrap, dlq, idle=1.0, security=admin)) == traffic.invalid


async def revoke_write_then_restore(secured: Secured, svc: Service, *, topic: str, group: str,
                                    target: str, rounds: tuple[list[bytes], list[bytes]],
                                    failure: str, held_at: int) -> tuple[list[int], list[int]]:
    """Produce `rounds[0]` and see it committed; revoke WRITE on `target`;
    produce `rounds[1]`: `failure` is logged and the commit stops at the
    offset of `rounds[1][held_at]`, and stays there; grant WRITE back: all of
    it is committed; SIGTERM exits 0. Returns both rounds' offsets."""
    bootstrap, admin = secured.bootstrap, secured.admin
    try:
        async def committed_to(offset: int) -> bool:
            return await committed_offsets(bootstrap, group, topic, 1,
                                           security=admin) == {0: offset}

        first = await produce_values(bootstrap, topic, rounds[0], security=admin)
        await wait_until(lambda: committed_to(first[-1] + 1), 60, "first round committed", svc)

        secured.broker.revoke("svc", ["Write"], topic=target)
        second = await produce_values(bootstrap, topic, rounds[1], security=admin)

        async def loud() -> bool:
            return failure in svc.log_tail()

        await wait_until(loud, 60, f"{failure!r} logged", svc)
        await wait_until(lambda: committed_to(second[held_at]), 30, "commit up to the held one",
                         svc)
        await asyncio.sleep(2.0)  # ten commit intervals: the commit stays put
        assert await committed_offsets(bootstrap, group, topic, 1,
                                       security=admin) == {0: second[held_at]}

        secured.broker.grant("svc", ["Write"], topic=target)
        await wait_until(lambda: committed_to(second[-1] + 1), 60, "all committed", svc)
        assert svc.terminate() == 0
    finally:
        if svc.alive:
            svc.kill()
    return first, second


async def test_dead_lettering_without_write_on_the_dlq_fails_loudly_and_loses_nothing(
        secured: Secured) -> None:
    bootstrap, admin = secured.bootstrap, secured.admin
    topic, dlq = f"acl-{uuid.uuid4().hex[:8]}", f"acl-{uuid.uuid4().hex[:8]}.dlq"
    await create_kafka_topics(bootstrap, {topic: 1, dlq: 1}, security=admin)
    group = f"g-{uuid.uuid4().hex[:8]}"
    secured.broker.grant("svc", ["Read"], topic=topic, group=group)
    secured.broker.grant("svc", ["Write"], topic=dlq)
    invalid = next(iter(invalid_samples()))[1]
    svc = Service(**secured.sasl_settings("svc"), topics=topic, dlq_topic=dlq, group_id=group,
                  sink_url="none", commit_interval="0.2", dlq_send_timeout="2").start()
    # The valid record before the invalid one commits; nothing past it does.
    first, second = await revoke_write_then_restore(
        secured, svc, topic=topic, group=group, target=dlq,
        rounds=([event_value(0)[1], invalid, event_value(1)[1]],
                [event_value(2)[1], invalid, event_value(3)[1]]),
        failure=f"dead-letter send to {dlq} failed", held_at=1)
    assert "TopicAuthorizationFailedError" in svc.log_tail()
    letters = await read_topic(bootstrap, dlq, idle=1.0, security=admin)
    origins = sorted(int(dict(r.headers)["dlq.original.offset"]) for r in letters)
    assert origins == [first[1], second[1]]


async def test_kafka_sink_without_write_holds_its_rows_and_recovers_when_granted_back(
        secured: Secured) -> None:
    bootstrap, admin = secured.bootstrap, secured.admin
    topic, out = f"sink-{uuid.uuid4().hex[:8]}", f"sink-{uuid.uuid4().hex[:8]}.out"
    await create_kafka_topics(bootstrap, {topic: 1, f"{topic}.dlq": 1, out: 1}, security=admin)
    group = f"g-{uuid.uuid4().hex[:8]}"
    secured.broker.grant("svc", ["Read"], topic=topic, group=group)
    secured.broker.grant("svc", ["Write"], topic=out)
    svc = Service(**secured.sasl_settings("svc"), topics=topic, group_id=group,
                  sink_url=f"kafka://{out}", commit_interval="0.2").start()
    events = [event_value(i) for i in range(6)]  # (id, value)
    await revoke_write_then_restore(
        secured, svc, topic=topic, group=group, target=out,
        rounds=([v for _, v in events[:3]], [v for _, v in events[3:]]),
        failure="sink kafka write of", held_at=0)
    written = await read_topic(bootstrap, out, idle=1.0, security=admin)
    assert {orjson.loads(r.value)["id"] for r in written} == {i for i, _ in events}
