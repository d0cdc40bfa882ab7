"""Small helpers shared by the local broker and database runners."""

from __future__ import annotations

import socket
import time
from pathlib import Path


def project_root() -> Path:
    """The source checkout: `devtools/` is never installed, so this is always
    the folder holding it (caches live under it)."""
    return Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_port_closed(port: int, timeout: float, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and port_open(port, host):
        time.sleep(0.1)
