"""End-to-end helpers: produce sample traffic, run the real service as a
subprocess (`python -m consumer.cli run`), and read back what it stored and
dead-lettered. Shared by the integration tests, `chaos/` and the chart's
node tests; it imports nothing of `tests`."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import TopicPartition

from consumer.security import PLAINTEXT, KafkaSecurity
from devtools.kafka import create_topics as create_kafka_topics
from devtools.ports import free_port, project_root
from schemas.samples import invalid_samples, sample_event


@dataclass
class Traffic:
    """What was produced: the valid events' ids, how many records were
    invalid, the poison events' ids, and (partition, offset) of every record."""

    valid: set[str] = field(default_factory=set)
    invalid: int = 0
    poison: set[str] = field(default_factory=set)
    placed: set[tuple[int, int]] = field(default_factory=set)


async def create_topics(bootstrap: str, partitions: int = 6, *,
                        security: KafkaSecurity = PLAINTEXT) -> tuple[str, str]:
    """A fresh topic and its dead-letter topic."""
    topic = f"e2e-{uuid.uuid4().hex[:10]}"
    await create_kafka_topics(bootstrap, {topic: partitions, f"{topic}.dlq": 1},
                              security=security)
    return topic, f"{topic}.dlq"


async def produce(bootstrap: str, topic: str, count: int, *, invalid_every: int = 0,
                  poison_every: int = 0, start: int = 0, rate: float | None = None,
                  keys: int | None = None, security: KafkaSecurity = PLAINTEXT) -> Traffic:
    """Send `count` sample records (events `start`, `start + 1`, …): every
    `invalid_every`-th one invalid, every `poison_every`-th a valid event
    whose id starts with `poison-` (a row the test database refuses). A
    valid event's key is its order id, or with `keys` one of that many
    (`k0`, `k1`, …, in turn), so several events share a key. `rate` paces
    the sending (records per second). Returns once every record is
    acknowledged."""
    traffic = Traffic()
    invalid = itertools.cycle([v for _, v in invalid_samples()])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20,
                                max_batch_size=256 * 1024, **security.options())
    await producer.start()
    began = time.monotonic()
    try:
        pending: list[asyncio.Future[Any]] = []
        for n in range(start, start + count):
            if invalid_every and n % invalid_every == invalid_every - 1:
                traffic.invalid += 1
                key, value = f"bad-{n}".encode(), next(invalid)
            else:
                event = sample_event(n)
                if poison_every and n % poison_every == poison_every - 1:
                    event["id"] = f"poison-{event['id']}"
                    traffic.poison.add(event["id"])
                else:
                    traffic.valid.add(event["id"])
                key = (f"k{n % keys}" if keys else event["data"]["order_id"]).encode()
                value = orjson.dumps(event)
            pending.append(await producer.send(topic, value, key=key))
            if len(pending) >= 5_000:
                traffic.placed.update((m.partition, m.offset)
                                      for m in await asyncio.gather(*pending))
                pending.clear()
            if rate:
                ahead = (n - start + 1) / rate - (time.monotonic() - began)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        traffic.placed.update((m.partition, m.offset) for m in await asyncio.gather(*pending))
    finally:
        await producer.stop()
    return traffic


class Service:
    """`consumer run` in a subprocess with CONSUMER_* settings."""

    def __init__(self, **settings: str) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CONSUMER_")}
        # Loopback only; no lingering /metrics after a failure unless a test asks.
        self.env.update({"CONSUMER_LOG_LEVEL": "WARNING", "CONSUMER_HTTP_HOST": "127.0.0.1",
                         "CONSUMER_METRICS_LINGER": "0",
                         "CONSUMER_HTTP_PORT": str(free_port())})
        self.env.update({f"CONSUMER_{k.upper()}": v for k, v in settings.items()})
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = Path(tempfile.mkdtemp(prefix="consumer-e2e-")) / "service.log"

    def start(self) -> Service:
        self.env["CONSUMER_HTTP_PORT"] = str(free_port())
        with self._log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "consumer.cli", "run"], env=self.env,
                cwd=project_root(), stdout=out, stderr=subprocess.STDOUT)
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 4_000) -> str:
        return self._log.read_text(errors="replace")[-chars:] if self._log.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no drain, no commit — the crash case."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait; return the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def metrics(self) -> str:
        import urllib.request

        url = f"http://127.0.0.1:{self.env['CONSUMER_HTTP_PORT']}/metrics"
        with urllib.request.urlopen(url, timeout=2) as resp:
            return str(resp.read().decode())


def terminate_all(*services: Service) -> list[int | None]:
    """SIGTERM each started service and wait: their exit codes (None for one
    that had to be killed). Every one is stopped, whatever the others do."""
    codes: list[int | None] = []
    for svc in services:
        if svc.proc is None:
            codes.append(None)
            continue
        try:
            codes.append(svc.terminate())
        except subprocess.TimeoutExpired:
            codes.append(None)  # terminate() killed it
    return codes


async def stored_ids(dsn: str) -> list[str]:
    conn: asyncpg.Connection[Any] = await asyncpg.connect(dsn)
    try:
        exists = await conn.fetchval("SELECT to_regclass('events') IS NOT NULL")
        if not exists:
            return []
        return [r["id"] for r in await conn.fetch("SELECT id FROM events")]
    finally:
        await conn.close()


async def count_rows(dsn: str) -> int:
    conn: asyncpg.Connection[Any] = await asyncpg.connect(dsn)
    try:
        if not await conn.fetchval("SELECT to_regclass('events') IS NOT NULL"):
            return 0
        return int(await conn.fetchval("SELECT count(*) FROM events"))
    finally:
        await conn.close()


async def wait_until(check: Callable[[], Any], seconds: float, what: str,
                     service: Service | None = None, *, interval: float = 0.5,
                     detail: Callable[[], str] | None = None) -> None:
    """Poll the predicate `check` (plain or async) until true; fail with
    `what`, `detail()` and the service's log tail. A check that cannot reach
    the service's HTTP port yet (URLError) counts as false."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await result
        except urllib.error.URLError:
            result = False
        if result:
            return
        more = f"\n{detail()}" if detail is not None else ""
        if service is not None and service.proc is not None and not service.alive:
            raise AssertionError(f"service exited ({service.proc.returncode}) while waiting "
                                 f"for {what}{more}\n{service.log_tail()}")
        if time.monotonic() > deadline:
            tail = service.log_tail() if service else ""
            raise AssertionError(f"timed out after {seconds:.0f}s waiting for {what}{more}\n{tail}")
        await asyncio.sleep(interval)


async def read_topic(bootstrap: str, topic: str, *, idle: float = 2.0,
                     security: KafkaSecurity = PLAINTEXT) -> list[Any]:
    """Every record in `topic` (no group), until nothing arrives for `idle` s."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, **security.options(),
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    out: list[Any] = []
    try:
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < idle:
            batch = await consumer.getmany(timeout_ms=300)
            for records in batch.values():
                out.extend(records)
                quiet_since = time.monotonic()
    finally:
        await consumer.stop()
    return out


def dlq_origins(records: Iterable[Any]) -> list[tuple[int, int]]:
    """(original partition, original offset) of each dead-letter record."""
    out = []
    for rec in records:
        headers = {k: v.decode() for k, v in rec.headers}
        out.append((int(headers["dlq.original.partition"]),
                    int(headers["dlq.original.offset"])))
    return out


async def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int, *,
                            security: KafkaSecurity = PLAINTEXT) -> dict[int, int]:
    """The group's committed offset of each of the topic's `partitions`
    partitions: 0 where it committed none, or while the group coordinator
    is not there yet."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **security.options())
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    except KafkaError:
        committed = {}
    finally:
        await admin.close()
    return {p: getattr(committed.get(TopicPartition(topic, p)), "offset", 0)
            for p in range(partitions)}


async def committed_all(bootstrap: str, group: str, topic: str, *,
                        security: KafkaSecurity = PLAINTEXT) -> bool:
    """True when the group's committed offsets reach the end of every partition."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **security.options())
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                **security.options())
    await admin.start()
    await consumer.start()
    try:
        try:
            committed = await admin.list_consumer_group_offsets(group)
        except KafkaError:
            return False  # the group coordinator is not there yet
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        ends = await consumer.end_offsets(tps)
        return all(committed.get(tp) is not None and committed[tp].offset == ends[tp]
                   for tp in tps)
    finally:
        await consumer.stop()
        await admin.close()
