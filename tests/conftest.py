"""Shared test settings."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from devtools.docker import DockerEngine
from devtools.images import build_service_image

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
