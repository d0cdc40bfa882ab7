"""A real throw-away PostgreSQL cluster from Debian's `postgresql` package.

Used by the integration tests when neither `DATABASE_URL` nor a Docker engine
is available. PostgreSQL refuses to run as root, so as root the cluster runs as
the unprivileged `postgres` user the package creates. Blocking; not for the
service's event loop.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from devtools.ports import free_port, port_open


def pg_bin_dir() -> Path:
    """The newest installed PostgreSQL server's bin folder."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_major)
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise RuntimeError("PostgreSQL server binaries not found; run `make setup` first")


def _major(path: str) -> int:
    try:
        return int(Path(path).parts[-3])
    except ValueError:
        return 0


@dataclass
class LocalPostgres:
    """`start()` returns a DSN once the server accepts connections;
    `stop()` shuts it down (fast mode) and removes its data. `host` is the one
    local address it listens on; `trusted` is a network (CIDR) whose clients
    connect without a password, besides the server's own address."""

    port: int = 0
    user: str = "consumer"
    database: str = "consumer"
    host: str = "127.0.0.1"
    trusted: str | None = None
    _dir: Path | None = field(default=None, init=False)
    _run_as: str | None = field(default=None, init=False)
    _opts: str = field(default="", init=False)

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while the server runs (for measurements)."""
        if self._dir is None:
            return None
        try:
            return int((self._dir / "data" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def start(self, timeout: float = 60.0) -> str:
        bindir = pg_bin_dir()
        self.port = self.port or free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="consumer-pg-"))
        self._run_as = "postgres" if os.geteuid() == 0 else None
        if self._run_as:
            entry = pwd.getpwnam(self._run_as)
            os.chown(self._dir, entry.pw_uid, entry.pw_gid)
        data = self._dir / "data"
        self._run([str(bindir / "initdb"), "-D", str(data), "-U", self.user,
                   "--auth=trust", "--encoding=UTF8", "--no-sync"])
        with (data / "pg_hba.conf").open("a") as hba:
            for network in (f"{self.host}/32", self.trusted):
                if network:
                    hba.write(f"host all all {network} trust\n")
        opts = (f"-c listen_addresses={self.host} -p {self.port} -k {self._dir} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=100 -c shared_buffers=128MB")
        self._opts = opts
        self.start_server(timeout)
        self._run([str(bindir / "createdb"), "-h", self.host, "-p", str(self.port),
                   "-U", self.user, self.database])
        return self.dsn

    def start_server(self, timeout: float = 60.0) -> None:
        """(Re)start the server on the same port and data directory."""
        assert self._dir is not None, "start() first"
        data = self._dir / "data"
        self._run([str(pg_bin_dir() / "pg_ctl"), "-D", str(data), "-l",
                   str(self._dir / "pg.log"), "-o", self._opts, "-w", "-t",
                   str(int(timeout)), "start"])
        deadline = time.monotonic() + timeout
        while not port_open(self.port, self.host):
            if time.monotonic() > deadline:
                raise TimeoutError(f"PostgreSQL not listening on {self.port}")
            time.sleep(0.1)

    def stop_server(self) -> None:
        """Stop the server (fast mode: clients are disconnected) but keep its
        data, so `start_server()` brings the same cluster back — an outage."""
        assert self._dir is not None, "start() first"
        self._run([str(pg_bin_dir() / "pg_ctl"), "-D", str(self._dir / "data"), "-m", "fast",
                   "-w", "stop"])

    def stop(self) -> None:
        if self._dir is None:
            return
        data = self._dir / "data"
        if (data / "postmaster.pid").exists():
            self._run([str(pg_bin_dir() / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                      check=False)
        shutil.rmtree(self._dir, ignore_errors=True)
        self._dir = None

    def _run(self, argv: list[str], check: bool = True) -> None:
        if self._run_as:
            argv = ["runuser", "-u", self._run_as, "--", *argv]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if check and proc.returncode != 0:
            log = self._dir / "pg.log" if self._dir else None
            tail = log.read_text()[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"{argv[-1]} failed: {proc.stdout}{proc.stderr}{tail}")
