"""A minimal client of the Kubernetes API: bearer token, JSON, plain urllib."""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

Obj = dict[str, Any]


class KubeError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:500]}")
        self.status = status


@dataclass(frozen=True, slots=True)
class Kube:
    server: str  # https://127.0.0.1:<port>
    token: str
    cafile: Path

    def request(self, method: str, path: str, body: Obj | None = None) -> Obj:
        """One API call; raises `KubeError` on a non-2xx answer."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": "application/json",
            "Accept": "application/json"})
        context = ssl.create_default_context(cafile=str(self.cafile))
        try:
            with urllib.request.urlopen(req, context=context, timeout=30) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise KubeError(exc.code, exc.read().decode(errors="replace")) from exc
        parsed: Obj = json.loads(raw) if raw.startswith(b"{") else {"raw": raw.decode()}
        return parsed

    def get(self, path: str) -> Obj:
        return self.request("GET", path)

    def create(self, path: str, obj: Obj) -> Obj:
        return self.request("POST", path, obj)

    def items(self, path: str, selector: str = "") -> list[Obj]:
        query = f"?labelSelector={urllib.parse.quote(selector)}" if selector else ""
        found: list[Obj] = self.get(path + query)["items"]
        return found


def wait_for(check: Callable[[], T | None], timeout: float, what: str,
             interval: float = 0.5) -> T:
    """Poll `check` until it returns something truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except (KubeError, OSError) as exc:  # not up yet, or not there yet
            last, result = exc, None
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last})")
