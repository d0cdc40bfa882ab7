"""The full service beside its peers and the raw clients, back to back in one
run, on one broker and one PostgreSQL, each contender in its own process with
a fresh group, all reading the same pre-produced topic of sample events:

* raw_aiokafka — a bare `getmany` loop (`bench.engine.raw_loop`), the ceiling;
* raw_confluent — a bare confluent-kafka `consume` loop, a second ceiling;
* pipeline_none / _postgres / _sqlite — `consumer run` as deployed (validate,
  store handler, sink, commit), sink `none`, PostgreSQL, SQLite;
* pipeline_postgres_exactly_once — pipeline_postgres with
  CONSUMER_DELIVERY=exactly_once (offsets and fencing in each write);
* pipeline_none_traced_1pct / _100pct — pipeline_none with
  CONSUMER_TRACING=otlp sampling 1 % and 100 % of the messages (no
  traceparent on the events: the service's own ratio decides), exporting to
  a real Jaeger on 127.0.0.1 (`bench/tracing.py`);
* quix_postgres — a quixstreams application, faust_postgres — a
  faust-streaming agent (`bench/peer_apps.py`, in their own virtualenv):
  validate with the same models, write batches with ON CONFLICT;
* pipeline_postgres_avro / quix_postgres_avro — the same events as Avro in
  the Schema Registry's wire format (written by confluent-kafka's
  AvroSerializer, a real Apicurio registry on 127.0.0.1): `consumer run`
  with CONSUMER_VALUE_FORMAT=avro, and the quixstreams application with its
  own Schema Registry AvroDeserializer.

Every PostgreSQL contender writes to a database of its own; afterwards its
rows are counted and its group's committed offsets summed. Rates exclude
start-up and group join (first message to last). Then: /metrics and
/healthz latency under the full backlog, a handler awaiting 5 ms per event,
and peak RSS under a 2M-message backlog.

    python -m bench.pipeline [--events 200000] [--backlog 2000000] [--no-peers]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sqlite3
import sys
import tempfile
import uuid
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiokafka.admin import AIOKafkaAdminClient

from bench.contenders import HEADER, Result, child, p99, percentiles, service, tree_cpu
from bench.peers_env import peer_env, peer_python
from bench.tracing import TRACED, Receiver
from consumer.sinks.postgres import PostgresSink
from devtools.kafka import LocalKafka, create_topics
from devtools.postgres import LocalPostgres
from devtools.registry import LocalSchemaRegistry
from schemas.samples import sample_event

PARTITIONS = 6
PIPELINE_AND_RAW = {"raw_aiokafka", "pipeline_none", "pipeline_postgres",
                    "pipeline_postgres_exactly_once", "pipeline_sqlite", "pipeline_postgres_avro",
                    *TRACED}
#: The contenders that read the Avro topic (a schema registry is started for them).
AVRO = {"pipeline_postgres_avro", "quix_postgres_avro"}


def produce(bootstrap: str, topic: str, count: int, *, keys: int | None = None,
            distinct: int | None = None) -> None:
    """`count` sample events (unique ids unless `distinct` caps the values
    made), keyed by order id or by `i % keys`; confluent-kafka, for speed."""
    from confluent_kafka import Producer

    asyncio.run(create_topics(bootstrap, {topic: PARTITIONS, f"{topic}.dlq": 1}))
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "batch.size": 512 * 1024, "queue.buffering.max.messages": 200_000})
    made: list[tuple[bytes, bytes]] = []
    for i in range(count):
        if distinct is None or i < distinct:
            event = sample_event(i)
            pair = (event["data"]["order_id"].encode(), orjson.dumps(event))
            if distinct is not None:
                made.append(pair)
        else:
            pair = made[i % distinct]
        key = pair[0] if keys is None else b"key-%d" % (i % keys)
        while True:
            try:
                producer.produce(topic, pair[1], key)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(120):
        raise RuntimeError(f"{topic}: not every event was produced")


def produce_avro(bootstrap: str, registry_url: str, topic: str, count: int) -> None:
    """The same sample events as `produce`, as Avro in the wire format, by
    confluent-kafka's own AvroSerializer with the shipped schemas."""
    import json

    from confluent_kafka import Producer
    from confluent_kafka.schema_registry import (
        SchemaRegistryClient,
        topic_record_subject_name_strategy,
    )
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    from schemas import validate_dict
    from schemas.avro_schemas import avro_record, avro_schema

    asyncio.run(create_topics(bootstrap, {topic: PARTITIONS, f"{topic}.dlq": 1}))
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "batch.size": 512 * 1024, "queue.buffering.max.messages": 200_000})
    ctx = SerializationContext(topic, MessageField.VALUE)
    with SchemaRegistryClient({"url": registry_url}) as client:
        serializers: dict[tuple[str, int], AvroSerializer] = {}
        for i in range(count):
            event = validate_dict(sample_event(i))
            key = (event.type, event.version)
            if key not in serializers:
                serializers[key] = AvroSerializer(
                    client, json.dumps(avro_schema(*key)), lambda obj, _ctx: obj,
                    conf={"subject.name.strategy": topic_record_subject_name_strategy})
            value = serializers[key](avro_record(event), ctx)
            while True:
                try:
                    producer.produce(topic, value, event.key().encode())
                    break
                except BufferError:
                    producer.poll(0.05)
            producer.poll(0)
    if producer.flush(120):
        raise RuntimeError(f"{topic}: not every event was produced")


async def _committed(bootstrap: str, group: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic)


async def _database(admin_dsn: str, name: str) -> str:
    """A fresh database with table `events` (the service's own migration)."""
    conn: asyncpg.Connection[Any] = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    dsn = admin_dsn.rsplit("/", 1)[0] + f"/{name}"
    sink = PostgresSink(dsn)
    await sink.open()
    await sink.close()
    return dsn


async def _rows(dsn: str) -> int:
    conn: asyncpg.Connection[Any] = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM events"))
    finally:
        await conn.close()


def _sqlite_rows(path: Path) -> int:
    with closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


def _verify(result: Result, bootstrap: str, group: str, topic: str, rows: int | None) -> None:
    committed = asyncio.run(_committed(bootstrap, group, topic))
    result.verified = f"committed {committed:,}" + ("" if rows is None else f", rows {rows:,}")


class Bench:
    def __init__(self, bootstrap: str, admin_dsn: str, topic: str, events: int,
                 db_pid: int | None = None) -> None:
        self.bootstrap, self.admin_dsn, self.topic, self.events = (bootstrap, admin_dsn, topic,
                                                                   events)
        self.db_pid = db_pid
        #: The Avro contenders' topic and registry (`avro()` sets them up).
        self.avro_topic = ""
        self.registry_url = ""
        self.results: dict[str, Result] = {}
        self.receiver = Receiver()

    def _db_cpu(self, result: Result, before: float) -> None:
        """PostgreSQL's own CPU per stored row while the contender ran."""
        used = tree_cpu(self.db_pid) - before
        if self.db_pid is not None and result.messages:
            result.verified += f"; PostgreSQL {used / self.events * 1e6:.0f} µs/row"

    def _group(self, name: str) -> str:
        return f"bench-{name}-{uuid.uuid4().hex[:6]}"

    def _record(self, result: Result) -> Result:
        self.results[result.name] = result
        print(result.line(), flush=True)
        return result

    def raw_aiokafka(self) -> None:
        group = self._group("raw")
        result = child("raw_aiokafka", [sys.executable, "-m", "bench.pipeline", "--raw-child",
                                        self.bootstrap, self.topic, group, str(self.events)])
        _verify(result, self.bootstrap, group, self.topic, None)
        self._record(result)

    def avro(self, registry_url: str) -> None:
        """Produce the Avro topic (once) for the Avro contenders."""
        if not self.avro_topic:
            self.registry_url = registry_url
            self.avro_topic = f"{self.topic}-avro"
            produce_avro(self.bootstrap, registry_url, self.avro_topic, self.events)

    def peer(self, name: str, which: str, database: bool, *, avro: bool = False) -> None:
        group = self._group(which)
        topic = self.avro_topic if avro else self.topic
        dsn = asyncio.run(_database(self.admin_dsn, name)) if database else None
        argv = [str(peer_python()), "bench/peer_apps.py", which, "--bootstrap", self.bootstrap,
                "--topic", topic, "--group", group, "--count", str(self.events)]
        if dsn is not None:
            argv += ["--dsn", dsn]
        if avro:
            argv += ["--registry", self.registry_url]
        db_before = tree_cpu(self.db_pid)
        result = child(name, argv, env=peer_env())
        _verify(result, self.bootstrap, group, topic,
                None if dsn is None else asyncio.run(_rows(dsn)))
        if dsn is not None:
            self._db_cpu(result, db_before)
        self._record(result)

    def traced(self, name: str, share: str) -> None:
        self.pipeline(name, "none", self.receiver.env(share))

    def pipeline(self, name: str, sink: str, env: dict[str, str] | None = None, *,
                 avro: bool = False) -> None:
        group = self._group(name)
        topic = self.avro_topic if avro else self.topic
        if avro:
            env = {**(env or {}), "CONSUMER_VALUE_FORMAT": "avro",
                   "CONSUMER_SCHEMA_REGISTRY_URL": self.registry_url}
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "bench.db"
            url = {"none": "none", "sqlite": f"sqlite:///{db}"}.get(sink)
            if url is None:
                url = asyncio.run(_database(self.admin_dsn, name))
            db_before = tree_cpu(self.db_pid)
            result = service(name, {"CONSUMER_BOOTSTRAP_SERVERS": self.bootstrap,
                                    "CONSUMER_TOPICS": topic, "CONSUMER_GROUP_ID": group,
                                    "CONSUMER_SINK_URL": url, **(env or {})}, self.events)
            rows = (None if sink == "none" else _sqlite_rows(db) if sink == "sqlite"
                    else asyncio.run(_rows(url)))
        _verify(result, self.bootstrap, group, topic, rows)
        if sink == "postgres":
            self._db_cpu(result, db_before)
        self._record(result)


def _raw_child(bootstrap: str, topic: str, group: str, count: str) -> None:
    import json

    import uvloop

    from bench.engine import raw_loop

    seconds, cpu = uvloop.run(raw_loop(bootstrap, topic, int(count), group=group))
    print(json.dumps({"messages": int(count), "seconds": seconds, "cpu": cpu}))


def ratio(name: str, a: Result | None, b: Result | None) -> None:
    if a is not None and b is not None and b.rate:
        print(f"{name} throughput ratio: {a.rate / b.rate:.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.pipeline")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--backlog", type=int, default=2_000_000, help="0 skips the RSS run")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--only", help="comma-separated contenders (default: all), e.g. "
                        "pipeline_postgres,quix_postgres; skips the later sections")
    parser.add_argument("--raw-child", nargs=4)
    args = parser.parse_args(argv)
    if args.raw_child:
        _raw_child(*args.raw_child)
        return
    if not args.no_peers:
        peer_python()  # made before anything is timed
    broker, pg, registry = LocalKafka(heap="1g"), LocalPostgres(), LocalSchemaRegistry()
    bootstrap = broker.start()
    try:
        only = set(args.only.split(",")) if args.only else None
        # The registry only for the Avro contenders (~210 MB, a few seconds).
        url = registry.start() if only is None or only & AVRO else None
        report(bootstrap, pg.start(), args, pg.pid, url)
    finally:
        registry.stop()
        pg.stop()
        broker.stop()


def report(bootstrap: str, dsn: str, args: argparse.Namespace, db_pid: int | None,
           registry_url: str | None = None) -> None:
    events = args.events
    topic = f"bench-pipeline-{uuid.uuid4().hex[:6]}"
    produce(bootstrap, topic, events)
    print(f"# pipeline: {events:,} sample events, {PARTITIONS} partitions, one broker and "
          "PostgreSQL, each contender in its own process with a fresh group; rates from the "
          "first message to the last; µs/msg = process CPU over that span", flush=True)
    print(HEADER, flush=True)
    bench = Bench(bootstrap, dsn, topic, events, db_pid)
    peers = not args.no_peers
    runs: dict[str, Callable[[], None]] = {
        "raw_aiokafka": bench.raw_aiokafka,
        "raw_confluent": lambda: bench.peer("raw_confluent", "confluent", database=False),
        "pipeline_none": lambda: bench.pipeline("pipeline_none", "none"),
        "pipeline_postgres": lambda: bench.pipeline("pipeline_postgres", "postgres"),
        # The same job with offsets and fencing in each write transaction.
        "pipeline_postgres_exactly_once": lambda: bench.pipeline(
            "pipeline_postgres_exactly_once", "postgres", {"CONSUMER_DELIVERY": "exactly_once"}),
        "pipeline_sqlite": lambda: bench.pipeline("pipeline_sqlite", "sqlite"),
        **{name: functools.partial(bench.traced, name, share) for name, share in TRACED.items()},
        "quix_postgres": lambda: bench.peer("quix_postgres", "quix", database=True),
        "pipeline_postgres_avro": lambda: bench.pipeline("pipeline_postgres_avro", "postgres",
                                                         avro=True),
        "quix_postgres_avro": lambda: bench.peer("quix_postgres_avro", "quix_avro",
                                                 database=True, avro=True),
        "faust_postgres": lambda: bench.peer("faust_postgres", "faust", database=True),
    }
    only = set(args.only.split(",")) if args.only else None
    try:
        for name, run in runs.items():
            if (only is None or name in only) and (peers or name in PIPELINE_AND_RAW):
                if name in AVRO:
                    assert registry_url is not None
                    bench.avro(registry_url)
                run()
    finally:
        bench.receiver.stop()
    r = bench.results.get
    ratio("pipeline_postgres/quix_postgres", r("pipeline_postgres"), r("quix_postgres"))
    ratio("pipeline_postgres/faust_postgres", r("pipeline_postgres"), r("faust_postgres"))
    ratio("pipeline_postgres/raw_aiokafka", r("pipeline_postgres"), r("raw_aiokafka"))
    ratio("pipeline_postgres_exactly_once/pipeline_postgres", r("pipeline_postgres_exactly_once"),
          r("pipeline_postgres"))
    ratio("pipeline_none/raw_aiokafka", r("pipeline_none"), r("raw_aiokafka"))
    ratio("pipeline_sqlite/raw_aiokafka", r("pipeline_sqlite"), r("raw_aiokafka"))
    ratio("pipeline_postgres/raw_confluent", r("pipeline_postgres"), r("raw_confluent"))
    ratio("pipeline_postgres_avro/pipeline_postgres", r("pipeline_postgres_avro"),
          r("pipeline_postgres"))
    ratio("pipeline_postgres_avro/quix_postgres_avro", r("pipeline_postgres_avro"),
          r("quix_postgres_avro"))
    for name in TRACED:
        ratio(f"{name}/pipeline_none", r(name), r("pipeline_none"))
    if (pg := r("pipeline_postgres")) is not None:
        print(f"pipeline_postgres CPU per message: {pg.cpu_us:.1f} µs (goal ≤ 30)")
    if (avro := r("pipeline_postgres_avro")) is not None:
        print(f"pipeline_postgres_avro CPU per message: {avro.cpu_us:.1f} µs")
    for name in ("pipeline_none", "pipeline_postgres"):
        for path, samples in getattr(r(name), "latency", {}).items():
            print(f"{name} {path} latency under a full backlog: {percentiles(samples)}")
    if pg is not None:
        print(f"/metrics p99 latency under a full backlog: "
              f"{p99(pg.latency['/metrics']) * 1e3:.0f} ms (goal < 100; an idle server on "
              f"this machine meanwhile: {p99(pg.latency['control (idle server)']) * 1e3:.0f} ms)")
    if only is not None:
        return
    slow_handler(bootstrap)
    if args.backlog:
        backlog(bootstrap, args.backlog)


def slow_handler(bootstrap: str) -> None:
    """A per-event handler awaiting 5 ms, key ordering, 1,000 keys."""
    topic = f"bench-slow-{uuid.uuid4().hex[:6]}"
    produce(bootstrap, topic, 100_000, keys=1_000, distinct=20_000)
    print("# handler awaiting 5 ms per event (bench.handlers:wait_5ms), key ordering, "
          "1,000 keys, sink none, 15 s each")
    for label, extra in (("default settings", {}),
                         ("CONSUMER_CONCURRENCY=256", {"CONSUMER_CONCURRENCY": "256"})):
        result = service(f"5 ms handler, {label}", {
            "CONSUMER_BOOTSTRAP_SERVERS": bootstrap, "CONSUMER_TOPICS": topic,
            "CONSUMER_GROUP_ID": f"bench-slow-{uuid.uuid4().hex[:6]}", "CONSUMER_SINK_URL": "none",
            "CONSUMER_HANDLER": "bench.handlers:wait_5ms", **extra}, 100_000, window=15.0)
        print(f"5 ms handler, {label}: {result.rate:,.0f} msg/s", flush=True)


def backlog(bootstrap: str, count: int) -> None:
    topic = f"bench-backlog-{uuid.uuid4().hex[:6]}"
    produce(bootstrap, topic, count, distinct=20_000)
    result = service("pipeline_none, 2M backlog", {
        "CONSUMER_BOOTSTRAP_SERVERS": bootstrap, "CONSUMER_TOPICS": topic,
        "CONSUMER_GROUP_ID": f"bench-backlog-{uuid.uuid4().hex[:6]}",
        "CONSUMER_SINK_URL": "none"}, count, window=20.0)
    print(f"pipeline under a {count:,}-message backlog (sink none, 20 s): "
          f"{result.rate:,.0f} msg/s, peak RSS {result.rss_mib:.0f} MiB (goal < 256 MiB)")


if __name__ == "__main__":
    main()
