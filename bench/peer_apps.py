"""The peers, written as a new user of each would: run by the peers'
interpreter (`bench/peers_env.py`), one contender per process.

    python bench/peer_apps.py {confluent,quix,quix_avro,faust} --bootstrap B --topic T
        --group G --count N [--dsn DSN] [--registry URL]

Each validates with the service's own models (`schemas.validate`: the same
pydantic work), writes rows to PostgreSQL table `events` with ON CONFLICT
(id) DO NOTHING, commits offsets, stops after N messages and prints one JSON
line: messages, seconds (first message to last write), cpu (process CPU
seconds over the same span). `quix_avro` reads Avro values in the Schema
Registry's wire format with quixstreams' own Schema Registry deserializer
and validates the decoded records with the same models.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import orjson

COLUMNS = ("id", "type", "version", "occurred_at", "data", "source", "topic", "partition",
           "offset", "key")
_COLS = ", ".join(f'"{c}"' for c in COLUMNS)
INSERT = f"INSERT INTO events ({_COLS}) VALUES %s ON CONFLICT (id) DO NOTHING"
STAGING = ("CREATE TEMP TABLE IF NOT EXISTS events_staging (LIKE events INCLUDING DEFAULTS) "
           "ON COMMIT DELETE ROWS")
FROM_STAGING = (f"INSERT INTO events ({_COLS}) SELECT {_COLS} FROM events_staging "
                "ON CONFLICT (id) DO NOTHING")


def row(event: Any, topic: str, partition: int, offset: int, key: bytes | None) -> tuple[Any, ...]:
    return (event.id, event.type, event.version, event.occurred_at,
            orjson.dumps(event.data_dict()).decode(), event.source, topic, partition, offset,
            key)


class Clock:
    """First message to last write, wall and process CPU."""

    def __init__(self) -> None:
        self.start = self.cpu = 0.0
        self.seconds = self.cpu_seconds = 0.0

    def first(self) -> None:
        if not self.start:
            self.start, self.cpu = time.monotonic(), time.process_time()

    def last(self) -> None:
        self.seconds = time.monotonic() - self.start
        self.cpu_seconds = time.process_time() - self.cpu

    def report(self, messages: int) -> None:
        # sys.__stdout__: faust redirects sys.stdout into its logger.
        out = sys.__stdout__
        assert out is not None
        out.write(json.dumps({"messages": messages, "seconds": self.seconds,
                              "cpu": self.cpu_seconds}) + "\n")
        out.flush()


def confluent(args: argparse.Namespace) -> None:
    """The second ceiling: a bare consume loop, no work, commits each second."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": args.group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([args.topic])
    clock, seen, last_commit = Clock(), 0, time.monotonic()
    offsets: dict[int, int] = {}
    try:
        while seen < args.count:
            messages = consumer.consume(5_000, 0.1)
            if messages:
                clock.first()
            for message in messages:
                partition, offset = message.partition(), message.offset()
                if message.error() is None and partition is not None and offset is not None:
                    seen += 1
                    offsets[partition] = offset + 1
            if time.monotonic() - last_commit >= 1.0 and offsets:
                consumer.commit(offsets=[TopicPartition(args.topic, p, o)
                                         for p, o in offsets.items()], asynchronous=False)
                last_commit = time.monotonic()
        consumer.commit(offsets=[TopicPartition(args.topic, p, o) for p, o in offsets.items()],
                        asynchronous=False)
        clock.last()
    finally:
        consumer.close()
    clock.report(seen)


def quix(args: argparse.Namespace) -> None:
    """A quixstreams application: validate in `apply`, a `BatchingSink`
    writing each checkpoint's batch with psycopg2's `execute_values`. With
    `--registry` (peer `quix_avro`) values are Avro in the Schema Registry's
    wire format: quixstreams' `AvroDeserializer` decodes them with the
    writer's schema, and the decoded records are validated with the models."""
    import psycopg2
    from psycopg2.extras import execute_values
    from quixstreams import Application
    from quixstreams.sinks import BatchingSink, SinkBatch

    from schemas import REGISTRY, validate, validate_decoded_with

    clock = Clock()
    # Checkpoints (when a BatchingSink writes) every second, like the
    # service's commit interval, rather than the default 5 s.
    app = Application(broker_address=args.bootstrap, consumer_group=args.group,
                      auto_offset_reset="earliest", commit_interval=1.0,
                      state_dir=tempfile.mkdtemp(prefix="quix-state-"))

    class PostgresSink(BatchingSink):  # type: ignore[misc]
        written = 0

        def setup(self) -> None:
            self.conn = psycopg2.connect(args.dsn)

        def write(self, batch: SinkBatch) -> None:
            rows = [row(item.value, batch.topic, batch.partition, item.offset, item.key)
                    for item in batch]
            with self.conn.cursor() as cur:
                execute_values(cur, INSERT, rows, page_size=1_000)
            self.conn.commit()
            self.written += len(rows)
            if self.written >= args.count:
                clock.last()
                app.stop()

    def validated(raw: bytes) -> Any:
        clock.first()
        return validate(raw)

    def validated_avro(doc: dict[str, Any]) -> Any:
        clock.first()
        return validate_decoded_with(REGISTRY, doc)

    sink = PostgresSink()
    deserializer: Any = "bytes"
    if args.registry:
        from quixstreams.models.serializers.avro import AvroDeserializer
        from quixstreams.models.serializers.schema_registry import SchemaRegistryClientConfig

        deserializer = AvroDeserializer(
            schema_registry_client_config=SchemaRegistryClientConfig(url=args.registry))
        validated = validated_avro  # type: ignore[assignment]
    topic = app.topic(args.topic, value_deserializer=deserializer, key_deserializer="bytes")
    app.dataframe(topic).apply(validated).sink(sink)
    app.run()
    clock.report(sink.written)


def faust_agent(args: argparse.Namespace) -> None:
    """A faust-streaming agent: `take_events(1000, within=0.5)`, validate,
    COPY into a staging table and INSERT … ON CONFLICT with asyncpg."""
    import asyncpg
    import faust

    from schemas import validate

    clock = Clock()
    app = faust.App(args.group, broker=f"kafka://{args.bootstrap}", web_enabled=False,
                    topic_replication_factor=1, topic_partitions=1, store="memory://",
                    consumer_auto_offset_reset="earliest",
                    datadir=tempfile.mkdtemp(prefix="faust-data-"))
    topic = app.topic(args.topic, value_type=bytes, value_serializer="raw",
                      key_serializer="raw")
    state = {"written": 0}

    # faust is typed only where the bench extra is installed: pin the
    # decorator's type so the check reads the same with and without it.
    agent = cast("Callable[[Callable[[Any], Awaitable[None]]], Any]", app.agent(topic))

    @agent
    async def store(stream: Any) -> None:
        pool = await asyncpg.create_pool(args.dsn, min_size=1, max_size=2,
                                         init=lambda c: c.execute(STAGING))
        async for events in stream.take_events(1_000, within=0.5):
            clock.first()
            rows = [row(validate(e.value), e.message.topic, e.message.partition,
                        e.message.offset, e.message.key) for e in events]
            async with pool.acquire() as conn, conn.transaction():
                await conn.copy_records_to_table("events_staging", records=rows,
                                                 columns=COLUMNS)
                await conn.execute(FROM_STAGING)
            state["written"] += len(rows)
            if state["written"] >= args.count:
                clock.last()
                for event in events:
                    event.ack()
                await app.consumer.commit()
                clock.report(state["written"])
                # A worker stopped from inside its own agent waits on that
                # agent; the offsets are committed, so leave at once.
                os._exit(0)

    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.execute_from_commandline()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("peer", choices=["confluent", "quix", "quix_avro", "faust"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--dsn")
    parser.add_argument("--registry", help="Schema Registry URL (quix_avro)")
    args = parser.parse_args()
    {"confluent": confluent, "quix": quix, "quix_avro": quix,
     "faust": faust_agent}[args.peer](args)


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
