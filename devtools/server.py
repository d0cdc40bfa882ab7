"""What the local throw-away servers (Prometheus, Jaeger) share: a working
directory of their own, one child process logging into it, a readiness wait,
and a stop by the child's pid that removes the directory. Blocking."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from devtools.kafka import stop_process


@dataclass
class LocalServer:
    """Subclasses call `_workdir()`, write their files there, then
    `_run(argv, ready, timeout)`."""

    _dir: Path | None = field(default=None, init=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def kind(self) -> str:
        return type(self).__name__.removeprefix("Local").lower()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def _workdir(self) -> Path:
        self._dir = Path(tempfile.mkdtemp(prefix=f"consumer-{self.kind}-"))
        return self._dir

    def _run(self, argv: Sequence[str], ready: Callable[[], bool], timeout: float,
             env: Mapping[str, str] | None = None) -> None:
        """Start `argv` in the working directory, its output to the log; return
        once `ready()`, raise (after stopping it) if it exits or times out.
        `env` is the child's whole environment (default: ours)."""
        assert self._dir is not None
        with (self._dir / f"{self.kind}.log").open("wb") as log:
            self._proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT,
                                          cwd=self._dir, env=env)
        deadline = time.monotonic() + timeout
        while not ready():
            if self._proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited {self._proc.returncode}: {self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"{self.kind} not ready")
            time.sleep(0.2)

    def log(self) -> str:
        path = self._dir / f"{self.kind}.log" if self._dir else None
        return path.read_text(errors="replace")[-3000:] if path and path.exists() else ""

    def stop(self) -> None:
        """Terminate our own process (by its pid) and remove its files. Safe twice."""
        if self._proc is not None:
            proc, self._proc = self._proc, None
            if proc.poll() is None:
                stop_process(proc.pid, grace=15.0)
                proc.wait()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
