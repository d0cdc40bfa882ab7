"""`consumer produce` against the real broker: N sent, N read back, all valid."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from consumer.produce import ProduceError, produce_events
from schemas import validate
from schemas.samples import invalid_samples, sample_bytes, sample_event
from tests.support.kafka import NewTopicFactory

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


async def read_all(bootstrap: str, topic: str, expected: int,
                   wait: float = 30.0) -> list[tuple[bytes | None, bytes]]:
    """Everything on `topic` from the start; stops at `expected` or after `wait` s."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    out: list[tuple[bytes | None, bytes]] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while len(out) < expected and loop.time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                out.extend((r.key, r.value) for r in records)
        # A short extra poll: more than expected would be a bug too.
        for records in (await consumer.getmany(timeout_ms=300)).values():
            out.extend((r.key, r.value) for r in records)
    finally:
        await consumer.stop()
    return out


def run_cli(*args: str, bootstrap: str, stdin: bytes | None = None,
            timeout: float = 120.0) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "CONSUMER_BOOTSTRAP_SERVERS": bootstrap}
    return subprocess.run(
        [sys.executable, "-m", "consumer.cli", "produce", *args],
        input=stdin, capture_output=True, env=env, cwd=ROOT, timeout=timeout, check=False,
    )


async def test_cli_count_sends_n_valid_keyed_unique_events(
    kafka_bootstrap: str, new_topic: NewTopicFactory
) -> None:
    topic = await new_topic("produce", partitions=3)
    n = 500
    result = await asyncio.to_thread(run_cli, "--topic", topic, "--count", str(n),
                                     bootstrap=kafka_bootstrap)
    assert result.returncode == 0, result.stderr.decode()
    assert f"sent {n} to {topic}" in result.stdout.decode()
    assert "failed 0" in result.stdout.decode()

    records = await read_all(kafka_bootstrap, topic, n)
    assert len(records) == n
    events = [validate(value) for _, value in records]
    assert len({e.id for e in events}) == n
    for (key, _), event in zip(records, events, strict=True):
        assert key is not None
        assert key == event.key().encode()
    assert {e.type for e in events} == {"order.created", "order.paid", "order.cancelled"}


async def test_cli_type_and_rate(kafka_bootstrap: str, new_topic: NewTopicFactory) -> None:
    topic = await new_topic("produce-rate")
    started = asyncio.get_running_loop().time()
    result = await asyncio.to_thread(run_cli, "--topic", topic, "--count", "20", "--rate", "40",
                                     "--type", "order.paid", bootstrap=kafka_bootstrap)
    assert result.returncode == 0, result.stderr.decode()
    # 20 messages at 40/s take at least ~0.5 s of sending.
    assert asyncio.get_running_loop().time() - started >= 0.45
    records = await read_all(kafka_bootstrap, topic, 20)
    assert {validate(v).type for _, v in records} == {"order.paid"}
    assert len(records) == 20


async def test_cli_ndjson_refuses_invalid_lines(
    kafka_bootstrap: str, new_topic: NewTopicFactory, tmp_path: Path
) -> None:
    topic = await new_topic("produce-ndjson")
    lines = [orjson.dumps(sample_event(i)) for i in range(3)]
    lines.insert(1, b'{"broken": ')
    lines.append(orjson.dumps({**sample_event(9), "type": "order.teleported"}))
    source = tmp_path / "events.ndjson"
    source.write_bytes(b"\n".join(lines) + b"\n")

    refused = await asyncio.to_thread(run_cli, "--topic", topic, "--from", str(source),
                                      bootstrap=kafka_bootstrap)
    assert refused.returncode == 1
    err = refused.stderr.decode()
    assert "line 2: invalid_json" in err
    assert "line 5: unknown_type" in err
    assert "nothing sent" in err
    assert await read_all(kafka_bootstrap, topic, 1, wait=2.0) == []

    sent = await asyncio.to_thread(run_cli, "--topic", topic, "--from", "-", "--allow-invalid",
                                   bootstrap=kafka_bootstrap, stdin=source.read_bytes())
    assert sent.returncode == 0, sent.stderr.decode()
    assert "2 invalid line(s) sent as-is" in sent.stdout.decode()
    records = await read_all(kafka_bootstrap, topic, 5)
    assert [value for _, value in records] == lines
    assert records[1][0] is None  # invalid lines go unkeyed
    assert records[0][0] == validate(lines[0]).key().encode()


async def test_produce_events_function(kafka_bootstrap: str, new_topic: NewTopicFactory) -> None:
    topic = await new_topic("produce-fn", partitions=2)
    acked: list[int] = []

    async def events() -> AsyncIterator[tuple[bytes, bytes]]:
        for i in range(200):
            yield sample_bytes(i)

    summary = await produce_events(kafka_bootstrap, topic, events(),
                                   progress=acked.append)
    assert (summary.sent, summary.failed) == (200, 0)
    assert sum(acked) == 200
    assert "sent 200" in summary.line()
    records = await read_all(kafka_bootstrap, topic, 200)
    assert len(records) == 200

    # Invalid payloads are the caller's choice: the function sends bytes as given.
    bad = [(None, raw) for _, raw in invalid_samples() if raw]
    summary = await produce_events(kafka_bootstrap, topic, bad)
    assert summary.sent == len(bad)


async def test_broker_down_fails_fast() -> None:
    started = asyncio.get_running_loop().time()
    with pytest.raises(ProduceError, match="cannot connect"):
        await produce_events("127.0.0.1:1", f"t-{uuid.uuid4().hex}", [], connect_timeout=5.0)
    assert asyncio.get_running_loop().time() - started < 10.0
