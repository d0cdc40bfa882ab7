"""A real throw-away Schema Registry: Apicurio Registry 2.4.2.Final (built
once by `scripts/build-schema-registry.sh`), whose Confluent-compatible API
is under `/apis/ccompat/v7`. It listens on 127.0.0.1 only, at a port the
kernel picks (read from its log); its storage is an H2 database in its own
working directory, so `halt()` then `start()` is a registry restart that
keeps its schemas and its port. `stop()` ends it by its pid and removes its
files. Blocking; not for the service's event loop.

`BasicAuthProxy` puts HTTP basic auth in front of it (Apicurio's own
authentication needs a Keycloak): a small reverse proxy on loopback that
answers 401 to a wrong user or password and forwards everything else.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import subprocess
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import ClientSession, web

from devtools.ports import project_root
from devtools.server import LocalServer

BUILD_SCRIPT = project_root() / "scripts" / "build-schema-registry.sh"
#: Where the Confluent-compatible API lives on an Apicurio server.
CCOMPAT = "/apis/ccompat/v7"
_LISTENING = re.compile(rb"Listening on: http://127\.0\.0\.1:(\d+)")


def registry_jar() -> Path:
    """The cached runner jar, built first when missing (a minute or two, once)."""
    path = subprocess.run(["bash", str(BUILD_SCRIPT), "--print"], check=True,
                          capture_output=True, text=True).stdout.strip()
    subprocess.run(["bash", str(BUILD_SCRIPT)], check=True)
    return Path(path)


@dataclass
class LocalSchemaRegistry(LocalServer):
    """`start()` returns the API's base URL once `/health/ready` is UP."""

    port: int = 0
    heap: str = "256m"

    @property
    def kind(self) -> str:
        return "schema-registry"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The Confluent-compatible API: what clients take as the registry URL."""
        return self.base_url + CCOMPAT

    def start(self, timeout: float = 120.0) -> str:
        jar = registry_jar()
        workdir = self._dir or self._workdir()
        env = {**os.environ,
               "REGISTRY_DATASOURCE_URL": f"jdbc:h2:file:{workdir / 'db' / 'registry'}"}
        argv = ["java", f"-Xmx{self.heap}", "-XX:+UseSerialGC",
                "-Dquarkus.http.host=127.0.0.1", f"-Dquarkus.http.port={self.port}",
                "-jar", str(jar)]
        self._run(argv, self._ready, timeout, env=env)
        return self.url

    def _ready(self) -> bool:
        if not self.port:
            found = _LISTENING.search(self._log_bytes())
            if found is None:
                return False
            self.port = int(found.group(1))
        try:
            with urllib.request.urlopen(f"{self.base_url}/health/ready", timeout=5) as resp:
                ok: bool = resp.status == 200
                return ok
        except (urllib.error.URLError, OSError):
            return False

    def _log_bytes(self) -> bytes:
        path = self._dir / f"{self.kind}.log" if self._dir else None
        return path.read_bytes() if path and path.exists() else b""

    def halt(self) -> None:
        """Stop the process by its pid, keeping its files and port for `start()`."""
        workdir, self._dir = self._dir, None
        try:
            super().stop()  # with no directory to remove
        finally:
            self._dir = workdir


@dataclass
class BasicAuthProxy:
    """A reverse proxy with HTTP basic auth in front of `upstream`, on
    127.0.0.1 at a free port, in a thread of its own (so blocking tests and
    the service's subprocess alike can use it). `start()` returns its base
    URL; `stop()` is safe twice."""

    upstream: str
    user: str
    password: str
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = field(default=None, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    _runner: web.AppRunner | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> str:
        started = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, args=(started,), daemon=True,
                                        name="basic-auth-proxy")
        self._thread.start()
        if not started.wait(30):
            raise TimeoutError("basic-auth proxy did not start")
        return self.url

    def _serve(self, started: threading.Event) -> None:
        assert self._loop is not None
        loop = self._loop
        asyncio.set_event_loop(loop)
        loop.run_until_complete(self._open())
        started.set()
        loop.run_forever()
        loop.run_until_complete(self._close())
        loop.close()

    async def _open(self) -> None:
        expected = "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        session = ClientSession()

        async def forward(request: web.Request) -> web.StreamResponse:
            if request.headers.get("Authorization") != expected:
                return web.json_response({"error_code": 401, "message": "Unauthorized"},
                                         status=401,
                                         headers={"WWW-Authenticate": 'Basic realm="registry"'})
            headers = {k: v for k, v in request.headers.items()
                       if k.lower() not in ("host", "authorization", "content-length")}
            async with session.request(request.method, self.upstream + request.path_qs,
                                       data=await request.read(), headers=headers) as resp:
                body = await resp.read()
                return web.Response(body=body, status=resp.status,
                                    content_type=resp.content_type)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", forward)

        async def close_session(_app: web.Application) -> None:
            await session.close()

        app.on_cleanup.append(close_session)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self.port = self._runner.addresses[0][1]

    async def _close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def stop(self) -> None:
        loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(30)
