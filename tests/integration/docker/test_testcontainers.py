"""The harness's testcontainers path, run for real: with a Docker engine
answering, the session broker is a Kafka container started through
testcontainers' container API (here the local image, as none can be pulled),
and the harness self-test and an end-to-end test pass against it."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from devtools.docker import DockerEngine
from devtools.ports import project_root

pytestmark = pytest.mark.integration

TESTS = [
    "tests/integration/test_harness.py",
    "tests/integration/pipeline/test_store_end_to_end.py::"
    "test_100k_events_exactly_the_valid_ones_stored_invalid_dead_lettered",
]


def test_harness_and_end_to_end_through_testcontainers(
        docker_engine: DockerEngine, kafka_image: str, pg_dsn: str) -> None:
    env = {k: v for k, v in docker_engine.env().items()
           if k not in {"KAFKA_BOOTSTRAP_SERVERS", "CONSUMER_TEST_NO_DOCKER"}}
    env |= {
        "CONSUMER_TEST_KAFKA_IMAGE": kafka_image,
        # Ryuk, testcontainers' reaper, is an image that cannot be pulled here;
        # the container is removed by the fixture and the engine is ours.
        "TESTCONTAINERS_RYUK_DISABLED": "true",
        # PostgreSQL stays the session's: only Kafka goes through the engine.
        "DATABASE_URL": pg_dsn,
    }
    since = str(int(time.time()) - 1)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-x", *TESTS],
        cwd=project_root(), env=env, capture_output=True, text=True, timeout=600, check=False)
    report = proc.stdout[-6000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, report
    assert "3 passed" in proc.stdout, report  # the harness file holds two tests

    # The broker really was a container of the Kafka image, started and removed.
    events = docker_engine.docker(
        "events", "--since", since, "--until", str(int(time.time()) + 1),
        "--filter", "type=container", "--filter", f"image={kafka_image}",
        "--format", "{{.Action}}").stdout.split()
    assert events.count("start") == 1, events
    assert "destroy" in events, events
