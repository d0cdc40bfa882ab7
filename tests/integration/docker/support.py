"""The service image run as a container: started detached with host
networking, probed over HTTP on 127.0.0.1, stopped with a signal."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from devtools.docker import DockerEngine
from devtools.ports import free_port

# What a restricted Kubernetes pod gets: read-only root, a writable /tmp, no
# capabilities, no privilege escalation.
RESTRICTED = ("--read-only", "--tmpfs", "/tmp:rw,size=64m", "--cap-drop", "ALL",
              "--security-opt", "no-new-privileges")


class ServiceContainer:
    """`docker run` of the service image; `close()` removes the container."""

    def __init__(self, engine: DockerEngine, image: str, *, mounts: tuple[str, ...] = (),
                 **settings: str) -> None:
        self.engine = engine
        self.image = image
        self.mounts = [arg for mount in mounts for arg in ("--volume", mount)]
        self.name = f"consumer-{uuid.uuid4().hex[:8]}"
        self.http_port = free_port()
        self.settings = {"CONSUMER_HTTP_HOST": "127.0.0.1",
                         "CONSUMER_HTTP_PORT": str(self.http_port),
                         **{f"CONSUMER_{k.upper()}": v for k, v in settings.items()}}

    def start(self) -> ServiceContainer:
        env = [arg for k, v in self.settings.items() for arg in ("--env", f"{k}={v}")]
        self.engine.docker("run", "--detach", "--name", self.name, "--network", "host",
                           *RESTRICTED, *self.mounts, *env, self.image)
        return self

    def state(self, field: str) -> str:
        return self.engine.docker("inspect", "-f", f"{{{{.State.{field}}}}}",
                                  self.name).stdout.strip()

    @property
    def running(self) -> bool:
        return self.state("Running") == "true"

    def logs(self) -> str:
        proc = self.engine.docker("logs", "--tail", "60", self.name, check=False)
        return (proc.stdout + proc.stderr)[-4000:]

    def get(self, path: str) -> tuple[int, str]:
        """GET http://127.0.0.1:<port><path>: (status, body); (0, reason) when
        nothing answers."""
        url = f"http://127.0.0.1:{self.http_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError as exc:
            return 0, str(exc)

    def process_uids(self) -> list[int]:
        """Real, effective, saved and filesystem uid of the container's main
        process, read from the host's /proc."""
        pid = self.state("Pid")
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return [int(u) for u in line.split()[1:]]
        raise AssertionError(f"no Uid line for pid {pid}")

    def signal_and_wait(self, signal: str, timeout: float) -> tuple[int, float]:
        """Send `signal`; return (exit code, seconds until the container exited)."""
        began = time.monotonic()
        self.engine.docker("kill", "--signal", signal, self.name)
        code = int(self.engine.docker("wait", self.name, timeout=timeout).stdout.strip())
        return code, time.monotonic() - began

    def close(self) -> None:
        self.engine.docker("rm", "--force", self.name, check=False)
