"""A private Docker engine for the session and the images built on it.

The engine runs from Debian's `docker.io` on its own socket (see
`consumer.dev.docker`); images are built from the local base image, since no
registry can be reached. Builds are cached in the engine's data root, so only
the first session pays for them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from consumer.dev.docker import DockerEngine
from consumer.dev.images import build_kafka_image, build_service_image


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    engine = DockerEngine()
    engine.start()
    try:
        yield engine
    finally:
        engine.stop()


@pytest.fixture(scope="session")
def service_image(docker_engine: DockerEngine) -> str:
    return build_service_image(docker_engine)


@pytest.fixture(scope="session")
def kafka_image(docker_engine: DockerEngine) -> str:
    return build_kafka_image(docker_engine)
