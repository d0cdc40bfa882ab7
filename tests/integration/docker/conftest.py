"""A private Docker engine for the session and the images built on it.

The engine runs from Debian's `docker.io` on its own socket (see
`devtools.docker`); images are built from the local base image, since no
registry can be reached. Builds are cached in the engine's data root, so only
the first session pays for them. The engine and the service image are
session fixtures of the tests' plugin (`tests/support/plugin.py`): the chart's
real-node tests share them.
"""

from __future__ import annotations

import pytest

from devtools.docker import DockerEngine
from devtools.images import build_kafka_image


@pytest.fixture(scope="session")
def kafka_image(docker_engine: DockerEngine) -> str:
    return build_kafka_image(docker_engine)
