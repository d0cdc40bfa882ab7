"""The full pipeline beside the raw client, in the same run on the same topic:

* raw aiokafka: `bench.engine.raw_loop`, a bare `getmany` loop (the ceiling);
* pipeline_none: `consumer run` with the `none` sink (where the time goes
  before any sink);
* pipeline_postgres: `consumer run` — validate, store into PostgreSQL via COPY,
  commit — as a subprocess, exactly as deployed;
* pipeline_sqlite: the same with the embedded SQLite sink.

Rates exclude start-up and group join: the raw loop counts from its first
record, the pipelines from the first done message to the last (read from the
service's `consumer_messages_total` on /metrics, polled every 0.1 s).
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer

from bench.engine import raw_loop
from consumer.dev.kafka import LocalKafka, create_topics
from consumer.dev.ports import free_port, project_root
from consumer.dev.postgres import LocalPostgres
from schemas.samples import sample_event

EVENTS = int(os.environ.get("BENCH_PIPELINE_EVENTS", "200000"))
PARTITIONS = 6


async def produce(bootstrap: str, topic: str, count: int) -> None:
    await create_topics(bootstrap, {topic: PARTITIONS, f"{topic}.dlq": 1})
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20,
                                max_batch_size=512 * 1024)
    await producer.start()
    try:
        pending: list[asyncio.Future[Any]] = []
        for i in range(count):
            event = sample_event(i)
            pending.append(await producer.send(topic, orjson.dumps(event),
                                               key=event["data"]["order_id"].encode()))
            if len(pending) >= 10_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def _service(bootstrap: str, topic: str, sink_url: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSUMER_")}
    env.update({
        "CONSUMER_BOOTSTRAP_SERVERS": bootstrap, "CONSUMER_TOPICS": topic,
        "CONSUMER_GROUP_ID": f"bench-{uuid.uuid4().hex[:6]}", "CONSUMER_SINK_URL": sink_url,
        "CONSUMER_HTTP_PORT": str(port), "CONSUMER_LOG_LEVEL": "WARNING",
    })
    proc = subprocess.Popen([sys.executable, "-m", "consumer.cli", "run"], env=env,
                            cwd=project_root())
    return proc, port


def _done_messages(port: int) -> float:
    """Sum of consumer_messages_total (every outcome) from the service's /metrics."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return 0.0
    return sum(float(v) for v in _MESSAGES.findall(text))


_MESSAGES = re.compile(r"^consumer_messages_total\{[^}]*\} ([0-9.e+]+)$", re.MULTILINE)


def pipeline(bootstrap: str, topic: str, count: int, sink_url: str,
             limit: float = 900.0) -> float:
    """Run `consumer run` until `count` messages are done; messages per second
    from the first done message to the last (start-up and group join excluded)."""
    proc, port = _service(bootstrap, topic, sink_url)
    try:
        first: tuple[float, float] | None = None
        deadline = time.monotonic() + limit
        while True:
            done = _done_messages(port)
            now = time.monotonic()
            if done and first is None:
                first = (now, done)
            if done >= count:
                break
            if proc.poll() is not None:
                raise RuntimeError(f"service exited with {proc.returncode}")
            if now > deadline:
                raise TimeoutError(f"{sink_url}: only {done:.0f} of {count} done in time")
            time.sleep(0.1)
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert first is not None
    return (count - first[1]) / max(now - first[0], 1e-3)


async def postgres_rows(dsn: str) -> int:
    conn: asyncpg.Connection[Any] = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM events"))
    finally:
        await conn.close()


def sqlite_rows(path: Path) -> int:
    with closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


def main() -> None:
    broker, pg = LocalKafka(), LocalPostgres()
    bootstrap = broker.start()
    dsn = pg.start()
    topic = f"bench-pipeline-{uuid.uuid4().hex[:6]}"
    try:
        asyncio.run(produce(bootstrap, topic, EVENTS))
        # uvloop, as the service runs: the same event loop on both sides.
        import uvloop

        raw = EVENTS / uvloop.run(raw_loop(bootstrap, topic, EVENTS))
        nothing = pipeline(bootstrap, topic, EVENTS, "none")
        postgres = pipeline(bootstrap, topic, EVENTS, dsn)
        stored_pg = asyncio.run(postgres_rows(dsn))
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "bench.db"
            sqlite = pipeline(bootstrap, topic, EVENTS, f"sqlite:///{db}")
            stored_sqlite = sqlite_rows(db)
    finally:
        pg.stop()
        broker.stop()
    print(f"pipeline ({EVENTS:,} sample events, {PARTITIONS} partitions, `consumer run` as "
          "deployed, rates exclude start-up):")
    print(f"raw_aiokafka:      {raw:>9,.0f} msg/s (getmany loop, no work; bench.engine)")
    print(f"pipeline_none:     {nothing:>9,.0f} msg/s (validate, store handler, no sink, commit)")
    print(f"pipeline_postgres: {postgres:>9,.0f} msg/s (validate, COPY into PostgreSQL, commit;"
          f" {stored_pg:,} rows)")
    print(f"pipeline_sqlite:   {sqlite:>9,.0f} msg/s (validate, SQLite sink, commit;"
          f" {stored_sqlite:,} rows)")
    print(f"pipeline_postgres/raw_aiokafka throughput ratio: {postgres / raw:.2f}")


if __name__ == "__main__":
    main()
