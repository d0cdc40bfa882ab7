"""The peers' virtualenv: made on first use from `peers-requirements.txt`,
cached under `.cache/bench-peers/<digest>/` (ignored by git), reused while
the requirements and the interpreter stay the same."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from devtools.ports import project_root

REQUIREMENTS = Path(__file__).with_name("peers-requirements.txt")


def peer_python() -> Path:
    """The peers' interpreter, creating its virtualenv when missing."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes() + sys.version.encode()).hexdigest()[:12]
    root = project_root() / ".cache" / "bench-peers" / digest
    python = root / "bin" / "python"
    ready = root / ".ready"
    if not ready.exists():
        print(f"# creating the peers' virtualenv in {root} (once)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(root)], check=True)
        env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        env.setdefault("PIP_CACHE_DIR", str(project_root() / ".cache" / "pip"))
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)],
                       check=True, env=env)
        ready.touch()
    return python


def peer_env() -> dict[str, str]:
    """Environment for a peer process: our `schemas` importable (the same
    validation), nothing of ours configured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSUMER_")}
    env["PYTHONPATH"] = str(project_root())
    return env
