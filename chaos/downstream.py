"""A downstream HTTP service on 127.0.0.1 that can be told to misbehave.

`POST /call` answers 200, or — while a fault is on — 429 (with Retry-After)
or 500. `POST /fault?status=429&seconds=8` turns a fault on for that long;
`GET /stats` returns the answers given so far by status. Run as its own
process (`python -m chaos.downstream --port P`) so the members' calls do not
compete with the chaos runner's loop; `Downstream` starts, drives and stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import orjson
from aiohttp import web

from devtools.ports import free_port, port_open, project_root

RETRY_AFTER = "1"


def app() -> web.Application:
    fault = {"status": 200, "until": 0.0}
    answers: Counter[int] = Counter()

    async def call(request: web.Request) -> web.Response:
        await request.read()
        status = fault["status"] if time.monotonic() < fault["until"] else 200
        answers[int(status)] += 1
        if status == 429:
            return web.Response(status=429, headers={"Retry-After": RETRY_AFTER})
        return web.Response(status=int(status), body=b"ok" if status == 200 else b"down")

    async def set_fault(request: web.Request) -> web.Response:
        fault["status"] = int(request.query["status"])
        fault["until"] = time.monotonic() + float(request.query["seconds"])
        return web.Response(text="ok")

    async def stats(_: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps({str(k): v for k, v in answers.items()}),
                            content_type="application/json")

    application = web.Application()
    application.add_routes([web.post("/call", call), web.post("/fault", set_fault),
                            web.get("/stats", stats)])
    return application


class Downstream:
    """The server as a child process; `stop()` by its pid, also on failure."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self._log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/call"

    def start(self, timeout: float = 30.0) -> None:
        with self._log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "chaos.downstream", "--port", str(self.port)],
                cwd=project_root(), stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"downstream did not start; see {self._log}")
            time.sleep(0.1)

    def fault(self, status: int, seconds: float) -> None:
        """Answer `status` to every call for `seconds` (blocking; call it in a thread)."""
        url = f"http://127.0.0.1:{self.port}/fault?status={status}&seconds={seconds}"
        with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=10):
            pass

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=10) as resp:
            data: dict[str, int] = orjson.loads(resp.read())
            return data

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:  # pragma: no cover - optional speed-up
        pass
    else:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(app(), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
