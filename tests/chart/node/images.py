"""Images for a node without a registry: the pause image written as an image
tarball from the static binary, and the service image saved from the Docker
engine that built it."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

from devtools.docker import DockerEngine, docker_client

PAUSE_IMAGE = "localhost/pause:3.10"


def pause_image_tarball(binary: Path) -> Path:
    """A `docker save`-format tarball of one layer holding `/pause`, written
    beside the binary once (the same bytes every time)."""
    out = binary.with_name("pause-image.tar")
    if out.exists():
        return out
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("pause")
        info.size, info.mode, info.mtime = binary.stat().st_size, 0o755, 0
        with binary.open("rb") as content:
            tar.addfile(info, content)
    layer_bytes = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [PAUSE_IMAGE],
                            "Layers": ["layer/layer.tar"]}]).encode()
    tmp = out.with_suffix(".tmp")
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in ((config_name, config), ("layer/layer.tar", layer_bytes),
                           ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    tmp.rename(out)
    return out


def save_image(engine: DockerEngine, ref: str, out: Path) -> Path:
    """`docker save ref` into `out`."""
    subprocess.run([docker_client(), "save", "--output", str(out), ref], env=engine.env(),
                   check=True, capture_output=True, timeout=600)
    return out
