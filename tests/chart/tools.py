"""The Go binaries and files the chart tests use, built once by
`scripts/build-k8s-tools.sh` into a user-level cache keyed by version."""

from __future__ import annotations

import subprocess
from pathlib import Path

from devtools.ports import project_root

SCRIPT = project_root() / "scripts" / "build-k8s-tools.sh"


def k8s_tools() -> dict[str, Path]:
    """Tool name -> cached path. Builds what is missing (instant when cached;
    `make test` runs the build before pytest so the first one is not timed)."""
    subprocess.run(["bash", str(SCRIPT)], check=True)
    listing = subprocess.run(["bash", str(SCRIPT), "--print"], check=True,
                             capture_output=True, text=True).stdout
    tools = {}
    for line in listing.splitlines():
        name, path = line.split(" ", 1)
        tools[name] = Path(path)
        if not tools[name].exists():
            raise FileNotFoundError(f"{SCRIPT.name} did not produce {path}")
    return tools
