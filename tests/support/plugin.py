"""The tests' pytest plugin (`-p tests.support.plugin` in pyproject.toml):
the hypothesis profile, the markers derived from what a test needs, and the
session-wide real servers.

Provider order for Kafka and PostgreSQL: an address from the environment
(`KAFKA_BOOTSTRAP_SERVERS`, `DATABASE_URL`) → testcontainers when a Docker
engine answers (Kafka: `devtools.containers`, host networking on a Linux
engine, image `CONSUMER_TEST_KAFKA_IMAGE` or apache/kafka) → a local process
(Kafka from Maven jars, PostgreSQL from Debian's package). A provider that
cannot start fails the tests; nothing skips.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from hypothesis import HealthCheck, settings

from devtools.docker import DockerEngine, ping
from devtools.images import build_service_image
from devtools.kafka import LocalKafka
from devtools.postgres import LocalPostgres
from devtools.registry import LocalSchemaRegistry
from tests.support.kafka import NewTopicFactory

# Property tests run in CI on a 2-core machine: bound them by examples, not time.
settings.register_profile("ci", max_examples=200, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")


#: What a test needs, told by the fixtures it uses (directly or not).
_NEEDS = {"kafka_bootstrap": "kafka", "kafka_admin": "kafka", "secured": "kafka",
          "node_kafka": "kafka", "pg_dsn": "postgres", "node_pg": "postgres",
          "docker_engine": "docker", "tools": "k8s", "schema_registry": "registry",
          "own_registry": "registry"}
#: ... and by where it lives: the real-node tests bring up a kubelet with
#: its iptables rules, bridges and mounts.
_NEEDS_BY_FOLDER = {"tests/chart/node/": ("host", "k8s"), "tests/chart/": ("k8s",)}
_SERVERS = {"kafka", "postgres", "registry", "docker", "k8s", "host"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with what it needs (see `markers` in pyproject.toml);
    every one of those makes it an `integration` test too. A test that starts
    a server of its own without such a fixture says so with the marker."""
    for item in items:
        needs = {_NEEDS[name] for name in getattr(item, "fixturenames", ()) if name in _NEEDS}
        path = item.nodeid.replace("\\", "/")
        for folder, markers in _NEEDS_BY_FOLDER.items():
            if path.startswith(folder):
                needs.update(markers)
                break
        needs.update(m.name for m in item.iter_markers() if m.name in _SERVERS)
        for name in sorted(needs):
            item.add_marker(name)
        if needs and item.get_closest_marker("integration") is None:
            item.add_marker("integration")


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    """A private Docker engine (`devtools.docker`), one per session."""
    engine = DockerEngine()
    engine.start()
    try:
        yield engine
    finally:
        engine.stop()


@pytest.fixture(scope="session")
def service_image(docker_engine: DockerEngine) -> str:
    """The service image built from the top-level Dockerfile."""
    return build_service_image(docker_engine)


def docker_engine_answers() -> bool:
    """Ping the engine itself: the `docker` client alone proves nothing."""
    if os.environ.get("CONSUMER_TEST_NO_DOCKER"):
        return False
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return False  # a remote engine: set KAFKA_BOOTSTRAP_SERVERS/DATABASE_URL instead
    return ping(Path(host.removeprefix("unix://")))


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    if addr := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield addr
        return
    if docker_engine_answers():
        from devtools.containers import KAFKA_IMAGE, kafka_container

        # CONSUMER_TEST_KAFKA_IMAGE: e.g. the local image where none can be pulled.
        with kafka_container(os.environ.get("CONSUMER_TEST_KAFKA_IMAGE", KAFKA_IMAGE)) as addr:
            yield addr
        return
    broker = LocalKafka()
    try:
        yield broker.start()
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    if dsn := os.environ.get("DATABASE_URL"):
        yield dsn
        return
    if docker_engine_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as container:
            yield container.get_connection_url()
        return
    server = LocalPostgres()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
async def kafka_admin(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    yield admin
    await admin.close()


@pytest.fixture
def new_topic(kafka_admin: AIOKafkaAdminClient) -> NewTopicFactory:
    """Creates a uniquely named topic; returns its name."""

    async def create(prefix: str = "t", partitions: int = 1, **config: str) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        await kafka_admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1,
                      topic_configs=config)]
        )
        return name

    return create


@pytest.fixture
def own_postgres() -> Iterator[LocalPostgres]:
    """A PostgreSQL server of the test's own, which it may stop and start (the
    session one is shared); stopped by its pid afterwards."""
    server = LocalPostgres()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def schema_registry() -> Iterator[LocalSchemaRegistry]:
    """A real Schema Registry (Apicurio, `devtools.registry`) for the session;
    stopped by its pid afterwards, also when a test failed."""
    server = LocalSchemaRegistry()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_registry() -> Iterator[LocalSchemaRegistry]:
    """A Schema Registry of the test's own, which it may halt and start again
    (same port, same schemas); stopped by its pid afterwards."""
    server = LocalSchemaRegistry()
    try:
        server.start()
        yield server
    finally:
        server.stop()
