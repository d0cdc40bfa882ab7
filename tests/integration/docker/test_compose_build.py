"""`docker compose build` of the stack's service, for real, on the private
engine: the compose file's build section makes the service image. (The rest
of the stack is not run here: its images cannot be pulled.)"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from devtools.docker import DockerEngine, compose_binary
from devtools.images import pip_build_args
from devtools.ports import project_root

pytestmark = pytest.mark.integration

TAG = "consumer:compose-test"


# The service image first: the base image imported, the CA bundle staged.
@pytest.mark.usefixtures("service_image")
def test_compose_builds_the_service_image(docker_engine: DockerEngine, tmp_path: Path) -> None:
    # What only this machine needs: host networking for the build (the engine
    # has no bridge) and the package index settings.
    override = tmp_path / "override.yml"
    override.write_text(yaml.safe_dump({"services": {"consumer": {
        "image": TAG, "build": {"network": "host", "args": pip_build_args()}}}}))
    root = project_root()
    proc = subprocess.run(
        [str(compose_binary()), "--project-directory", str(root),
         "-f", str(root / "docker-compose.yml"), "-f", str(override), "build", "consumer"],
        env={**docker_engine.env(), "COMPOSE_BAKE": "false"}, capture_output=True, text=True,
        timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # The tag stays on the private engine: the next run's build is a cache hit.
    config = json.loads(docker_engine.docker("image", "inspect", "-f", "{{json .Config}}",
                                             TAG).stdout)
    assert config["Entrypoint"] == ["consumer", "run"]
    assert config["User"] == "10001:10001"
    assert config["Labels"]["org.opencontainers.image.title"] == "consumer"
