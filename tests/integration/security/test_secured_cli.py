"""`consumer produce` and `consumer dlq inspect|replay` over SASL_SSL with
the service's own CONSUMER_* security settings (here SCRAM-SHA-256, a user
with WRITE on the topic and READ on the dead-letter topic only)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from devtools.harness import read_topic
from devtools.kafka import create_topics
from devtools.ports import project_root
from schemas.samples import sample_bytes
from tests.integration.security.support import Secured

pytestmark = pytest.mark.integration


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "consumer.cli", *args], env=env,
                          cwd=project_root(), capture_output=True, text=True, timeout=120,
                          check=False)


async def test_produce_and_dlq_inspect_replay_over_sasl_ssl(secured: Secured) -> None:
    bootstrap, admin = secured.bootstrap, secured.admin
    topic = f"cli-{uuid.uuid4().hex[:8]}"
    dlq = f"{topic}.dlq"
    await create_topics(bootstrap, {topic: 1, dlq: 1}, security=admin)
    secured.broker.grant("cli", ["Write"], topic=topic)
    secured.broker.grant("cli", ["Read"], topic=dlq)
    # Two dead letters, as the service writes them.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **admin.options())
    await producer.start()
    try:
        for i in range(2):
            key, value = sample_bytes(100 + i)
            await producer.send_and_wait(dlq, value, key=key, headers=[
                ("dlq.original.topic", topic.encode()), ("dlq.original.partition", b"0"),
                ("dlq.original.offset", str(i).encode()), ("dlq.error.type", b"FatalError"),
                ("dlq.error.message", b"boom"), ("dlq.attempts", b"1")])
    finally:
        await producer.stop()

    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSUMER_")}
    env.update({f"CONSUMER_{k.upper()}": v for k, v in
                secured.sasl_settings("cli", mechanism="SCRAM-SHA-256").items()})
    env["CONSUMER_TOPICS"] = topic  # the dead-letter topic defaults to <topic>.dlq
    outputs = []

    produced = cli(env, "produce", "--topic", topic, "--count", "5")
    outputs.append(produced.stdout + produced.stderr)
    assert produced.returncode == 0, produced.stderr
    assert produced.stdout.startswith(f"sent 5 to {topic}")

    inspected = cli(env, "dlq", "inspect")
    outputs.append(inspected.stdout + inspected.stderr)
    assert inspected.returncode == 0, inspected.stderr
    assert f"{dlq}: 2 of 2 records" in inspected.stdout
    assert inspected.stdout.count("FatalError") == 2

    replayed = cli(env, "dlq", "replay")
    outputs.append(replayed.stdout + replayed.stderr)
    assert replayed.returncode == 0, replayed.stderr
    assert f"replayed 2 (2 to {topic})" in replayed.stdout

    refused = cli(env | {"CONSUMER_SASL_PASSWORD": "wrong"}, "produce", "--topic", topic)
    outputs.append(refused.stdout + refused.stderr)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"error: authentication failed for user 'cli' (SCRAM-SHA-256) at {bootstrap}: "
        "Authentication failed during authentication due to invalid credentials with SASL "
        "mechanism SCRAM-SHA-256")

    records = await read_topic(bootstrap, topic, idle=1.0, security=admin)
    assert len(records) == 7  # 5 produced, 2 replayed
    assert sum(1 for r in records if ("dlq.replay.count", b"1") in r.headers) == 2
    for output in outputs:
        assert secured.passwords["cli"] not in output
        assert "Traceback" not in output
