"""Container images for the tests, built on a `DockerEngine` without a registry.

- The base image: the Dockerfile's `python:3.11-slim` cannot be pulled here,
  so `scripts/build-base-image.sh` makes a stand-in once (debootstrap: Debian
  bookworm with Python 3.11 and venv, a tarball in the user cache) and
  `ensure_base_image` imports it under that name.
- The service image: the top-level Dockerfile, built with this machine's pip
  settings (package index, CA bundle) passed in for the builder stage only.
- A Kafka image for the testcontainers path: the base image, a JRE and the
  broker jars the project resolves with Maven (`devtools/kafka-image/`).

Each build is cached by the engine's layer cache: a rebuild with nothing
changed takes seconds. Blocking; for fixtures and scripts. Needs a checkout
(the Dockerfile and the scripts are not in the installed package).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from devtools.docker import DockerEngine
from devtools.kafka import ensure_jars
from devtools.ports import project_root

BASE_IMAGE = "python:3.11-slim"  # the Dockerfile's default BASE_IMAGE
SERVICE_IMAGE = "consumer:test"
KAFKA_IMAGE = "consumer-dev/kafka:4.1.1"
BASE_LABEL = "dev.consumer.base-image"
KAFKA_CONTEXT = Path(__file__).with_name("kafka-image")
# pip settings worth passing into a build, as `pip config list` names them.
_PIP_BUILD_ARGS = {"index-url": "PIP_INDEX_URL", "extra-index-url": "PIP_EXTRA_INDEX_URL",
                   "trusted-host": "PIP_TRUSTED_HOST", "default-timeout": "PIP_DEFAULT_TIMEOUT"}


def base_image_tarball(root: Path | None = None) -> Path:
    """Build (once) and return the cached base root filesystem tarball."""
    script = (root or project_root()) / "scripts" / "build-base-image.sh"
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{script.name} failed:\n{proc.stderr[-3000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def ensure_base_image(engine: DockerEngine, tag: str = BASE_IMAGE) -> str:
    """Import the base tarball as `tag` unless that exact tarball is there."""
    tarball = base_image_tarball()
    key = tarball.parent.name  # base-image-<version>
    found = engine.docker("image", "inspect", "-f", f'{{{{index .Config.Labels "{BASE_LABEL}"}}}}',
                          tag, check=False)
    if found.returncode != 0 or found.stdout.strip() != key:
        engine.docker("import", "--change", f"LABEL {BASE_LABEL}={key}",
                      "--change", "ENV LANG=C.UTF-8", str(tarball), tag)
    return tag


def pip_settings() -> tuple[dict[str, str], Path | None]:
    """This machine's pip settings (files and PIP_* variables, as pip itself
    resolves them): build args, and the CA bundle pip is told to trust."""
    proc = subprocess.run([sys.executable, "-m", "pip", "config", "list"],
                          capture_output=True, text=True, check=False)
    values: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        if match := re.fullmatch(r"[^=]*\.([a-z-]+)='(.*)'", line.strip()):
            values[match[1]] = match[2]  # later lines (the environment) win
    args = {arg: values[key] for key, arg in _PIP_BUILD_ARGS.items() if key in values}
    cert = Path(values["cert"]) if "cert" in values else None
    return args, cert if cert and cert.is_file() else None


def pip_build_args(root: Path | None = None) -> dict[str, str]:
    """Build args carrying this machine's pip settings; its CA bundle, if pip
    is told to trust one, is staged as `.docker-build/pip-ca.pem` in the
    build context (ignored by git), where the Dockerfile's builder looks."""
    args, cert = pip_settings()
    staged = (root or project_root()) / ".docker-build" / "pip-ca.pem"
    if cert is not None:
        staged.parent.mkdir(exist_ok=True)
        if not staged.exists() or staged.read_bytes() != cert.read_bytes():
            shutil.copyfile(cert, staged)
    elif staged.exists():
        staged.unlink()
    return args


def build_service_image(engine: DockerEngine, tag: str = SERVICE_IMAGE,
                        root: Path | None = None, timeout: float = 1200) -> str:
    """Build the top-level Dockerfile as `tag` on the base image; returns `tag`."""
    root = root or project_root()
    ensure_base_image(engine)
    args = pip_build_args(root)
    version = tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"]
    revision, created = _git_commit(root)
    args |= {"VERSION": version, "REVISION": revision, "CREATED": created}
    _build(engine, root, tag, args, timeout)
    return tag


def build_kafka_image(engine: DockerEngine, tag: str = KAFKA_IMAGE,
                      timeout: float = 1200) -> str:
    """Build the local single-node Kafka image as `tag`; returns `tag`."""
    ensure_base_image(engine)
    libs = ensure_jars()
    with tempfile.TemporaryDirectory(prefix="consumer-kafka-image-") as tmp:
        context = Path(tmp)
        for item in KAFKA_CONTEXT.iterdir():
            shutil.copy2(item, context / item.name)
        shutil.copytree(libs, context / "libs", ignore=shutil.ignore_patterns(".*"))
        _build(engine, context, tag, {}, timeout)
    return tag


def _build(engine: DockerEngine, context: Path, tag: str, args: dict[str, str],
           timeout: float) -> None:
    argv = ["build", "--network", "host", "--tag", tag]
    for name, value in args.items():
        argv += ["--build-arg", f"{name}={value}"]
    engine.docker(*argv, str(context), timeout=timeout)
    # Keep the layer cache of recent builds, drop what stale ones left behind.
    engine.docker("image", "prune", "--force", "--filter", "until=24h", check=False)


def image_size(engine: DockerEngine, ref: str) -> int:
    """The image's size in bytes, as the engine reports it."""
    return int(engine.docker("image", "inspect", "-f", "{{.Size}}", ref).stdout)


def _git_commit(root: Path) -> tuple[str, str]:
    """The checkout's commit and its time: the same commit builds the same labels."""
    proc = subprocess.run(["git", "-C", str(root), "log", "-1", "--format=%H %cI"],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return "unknown", "unknown"
    revision, created = proc.stdout.split()
    return revision, created
