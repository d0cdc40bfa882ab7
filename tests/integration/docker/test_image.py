"""The service image, built from the top-level Dockerfile and run for real:
against the test broker and PostgreSQL, as a restricted pod would run it."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import uuid
from pathlib import Path

import pytest

from devtools.docker import DockerEngine
from devtools.harness import (
    committed_all,
    count_rows,
    create_topics,
    produce,
    read_topic,
    stored_ids,
    wait_until,
)
from devtools.images import BASE_IMAGE, image_size
from devtools.ports import project_root
from tests.integration.docker.support import RESTRICTED, ServiceContainer
from tests.integration.sinks.dbs import fresh_database

pytestmark = pytest.mark.integration

EVENTS = 3_000
INVALID_EVERY = 50
SHUTDOWN_TIMEOUT = 20
SQLITE_EVENTS = 500
# What the dependencies may add to the base image; more means something that
# does not belong in a runtime image (a compiler, caches, test tools) got in.
MAX_ADDED_BYTES = 100 * 1024 * 1024


def test_image_metadata_user_and_no_build_tools(docker_engine: DockerEngine,
                                                service_image: str) -> None:
    config = json.loads(docker_engine.docker("image", "inspect", "-f", "{{json .Config}}",
                                             service_image).stdout)
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["consumer", "run"]
    assert config["StopSignal"] == "SIGTERM"
    assert config["WorkingDir"] == "/var/lib/consumer"
    assert "8080/tcp" in config["ExposedPorts"]
    labels = config["Labels"]
    head = subprocess.run(["git", "-C", str(project_root()), "rev-parse", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert labels["org.opencontainers.image.revision"] == head
    assert labels["org.opencontainers.image.title"] == "consumer"
    assert labels["org.opencontainers.image.version"] == "0.1.0"
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.base.name"] == BASE_IMAGE
    assert labels["org.opencontainers.image.created"].startswith("20")

    probe = docker_engine.docker(
        "run", "--rm", "--network", "none", *RESTRICTED, "--entrypoint", "sh", service_image,
        "-c", "id -u; for t in gcc cc make pip; do command -v $t; done; "
              "ls /opt/venv/lib/python3.11/site-packages | grep -E '^(pip|setuptools)\\b'; "
              "consumer --help >/dev/null && echo cli-ok; "
              "/opt/venv/bin/python -c 'import opentelemetry.sdk, "
              "opentelemetry.exporter.otlp.proto.http' && echo otel-ok")
    assert probe.stdout.split() == ["10001", "cli-ok", "otel-ok"], probe.stdout

    size, base = image_size(docker_engine, service_image), image_size(docker_engine, BASE_IMAGE)
    print(f"\nimage {service_image}: {size / 1e6:.0f} MB "
          f"(base {base / 1e6:.0f} MB + {(size - base) / 1e6:.0f} MB)")
    assert size - base < MAX_ADDED_BYTES


def test_bad_setting_exits_2_naming_it(docker_engine: DockerEngine, service_image: str) -> None:
    proc = docker_engine.docker("run", "--rm", "--network", "none", *RESTRICTED,
                                "--env", "CONSUMER_ORDERING=sideways", service_image,
                                check=False, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "CONSUMER_ORDERING" in proc.stderr


async def test_container_stores_events_serves_probes_and_drains_on_sigterm(
        docker_engine: DockerEngine, service_image: str, kafka_bootstrap: str,
        pg_dsn: str) -> None:
    dsn = await fresh_database(pg_dsn, "image")
    topic, dlq = await create_topics(kafka_bootstrap, partitions=3)
    group = f"g-{uuid.uuid4().hex[:8]}"
    service = ServiceContainer(docker_engine, service_image, bootstrap_servers=kafka_bootstrap,
                               topics=topic, dlq_topic=dlq, group_id=group, sink_url=dsn,
                               shutdown_timeout=str(SHUTDOWN_TIMEOUT)).start()
    try:
        async def ready() -> bool:
            if not service.running:
                raise AssertionError(f"container exited:\n{service.logs()}")
            return service.get("/readyz")[0] == 200

        await wait_until(ready, 90, "/readyz 200")
        assert service.get("/healthz")[0] == 200
        assert service.process_uids() == [10001] * 4

        traffic = await produce(kafka_bootstrap, topic, EVENTS, invalid_every=INVALID_EVERY)

        async def all_stored() -> bool:
            return await count_rows(dsn) >= len(traffic.valid)

        async def all_committed() -> bool:
            return await committed_all(kafka_bootstrap, group, topic)

        await wait_until(all_stored, 120, f"{len(traffic.valid)} rows")
        await wait_until(all_committed, 60, "offsets committed to the end")
        status, metrics = service.get("/metrics")
        assert status == 200
        assert messages_counted(metrics, topic) == EVENTS

        code, took = service.signal_and_wait("SIGTERM", timeout=SHUTDOWN_TIMEOUT + 30)
        logs = service.logs()
    finally:
        service.close()
    assert code == 0, logs
    assert took < SHUTDOWN_TIMEOUT, f"took {took:.1f}s to stop"
    ids = await stored_ids(dsn)
    assert len(ids) == len(set(ids))
    assert set(ids) == traffic.valid
    assert len(await read_topic(kafka_bootstrap, dlq)) == traffic.invalid


async def test_default_sqlite_sink_writes_to_the_mounted_working_directory(
        docker_engine: DockerEngine, service_image: str, kafka_bootstrap: str,
        tmp_path: Path) -> None:
    # The chart's default: SQLite on a volume at /var/lib/consumer, root read-only.
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o777)  # as an emptyDir is
    topic, dlq = await create_topics(kafka_bootstrap, partitions=2)
    service = ServiceContainer(docker_engine, service_image, topics=topic, dlq_topic=dlq,
                               bootstrap_servers=kafka_bootstrap, group_id=topic,
                               mounts=(f"{data}:/var/lib/consumer",)).start()
    try:
        traffic = await produce(kafka_bootstrap, topic, SQLITE_EVENTS)

        async def all_counted() -> bool:
            if not service.running:
                raise AssertionError(f"container exited:\n{service.logs()}")
            status, metrics = service.get("/metrics")
            return status == 200 and messages_counted(metrics, topic) == SQLITE_EVENTS

        await wait_until(all_counted, 90, f"{SQLITE_EVENTS} messages processed")
        code, _ = service.signal_and_wait("SIGTERM", timeout=SHUTDOWN_TIMEOUT + 30)
        logs = service.logs()
    finally:
        service.close()
    assert code == 0, logs
    with sqlite3.connect(data / "consumer.db") as db:
        ids = {row[0] for row in db.execute("SELECT id FROM events")}
    assert ids == traffic.valid


def messages_counted(metrics: str, topic: str) -> float:
    """Sum of `consumer_messages_total` over outcomes for `topic`."""
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith("consumer_messages_total{") and f'topic="{topic}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total
