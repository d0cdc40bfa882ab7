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
