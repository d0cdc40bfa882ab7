"""A small client of a Confluent-compatible Schema Registry's REST API, on
aiohttp: fetch a schema by id, check access at start-up, register a schema
(for `consumer produce`). Basic auth and a private CA when configured.

Every failure to get an answer — connection refused, timeout, TLS, 401/403,
5xx, an unexpected status — is a `RegistryError` (retriable); "this id does
not exist" (404 with Confluent's error code 40403) is an answer: None.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from consumer.errors import RegistryError
from consumer.masking import mask_url

#: Confluent's error code for "schema not found" (Apicurio's ccompat API too).
SCHEMA_NOT_FOUND = 40403
_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
#: Bodies of error answers are read at most this far (they go into one line).
_MAX_ERROR_BODY = 512


@dataclass(frozen=True, slots=True)
class RegisteredSchema:
    """A writer schema as the registry returns it: `schema_type` is AVRO
    (the registry omits it for Avro), JSON or PROTOBUF."""

    schema_id: int
    schema_type: str
    schema: str
    references: tuple[Any, ...] = ()


class RegistryClient:
    """One HTTP session to the registry at `url` (the API's base, e.g.
    `https://registry:8081` or Apicurio's `…/apis/ccompat/v7`). `start()`
    opens the session; `close()` is safe twice. Each request is bounded by
    `timeout` seconds. `on_request(kind)` is told of each request's outcome:
    ok, not_found, unreachable, timeout, refused, status."""

    def __init__(self, url: str, *, user: str | None = None, password: str | None = None,
                 ca: Path | None = None, timeout: float = 5.0,
                 on_request: Any = None) -> None:
        self.url = url.rstrip("/")
        self.shown = mask_url(self.url)
        self._auth = aiohttp.BasicAuth(user, password or "") if user else None
        self._ca = ca
        self._timeout = timeout
        self._on_request = on_request or (lambda _kind: None)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is not None:
            return
        ssl_context: ssl.SSLContext | bool = True
        if self._ca is not None:
            ssl_context = ssl.create_default_context(cafile=str(self._ca))
        self._session = aiohttp.ClientSession(
            auth=self._auth, timeout=aiohttp.ClientTimeout(total=self._timeout),
            connector=aiohttp.TCPConnector(ssl=ssl_context, limit=8),
            headers={"Accept": _CONTENT_TYPE})

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __aenter__(self) -> RegistryClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def check(self) -> None:
        """One request that needs access (the list of subjects): raises
        `RegistryError` with one line saying why when it fails."""
        await self._request("GET", "/subjects")

    async def schema(self, schema_id: int) -> RegisteredSchema | None:
        """The writer schema `schema_id`, or None when the registry does not
        know it. Raises `RegistryError` when it cannot answer."""
        body = await self._request("GET", f"/schemas/ids/{schema_id}", not_found_ok=True)
        if body is None:
            return None
        if not isinstance(body, dict) or not isinstance(body.get("schema"), str):
            raise RegistryError(f"schema registry {self.shown}: schema {schema_id}: an answer "
                                "without a schema")
        return RegisteredSchema(schema_id, str(body.get("schemaType") or "AVRO"),
                                body["schema"], tuple(body.get("references") or ()))

    async def register(self, subject: str, schema: str, schema_type: str = "AVRO") -> int:
        """Register `schema` under `subject` (or find it registered); its id."""
        payload: dict[str, Any] = {"schema": schema}
        if schema_type != "AVRO":
            payload["schemaType"] = schema_type
        body = await self._request("POST", f"/subjects/{subject}/versions", json=payload)
        if not isinstance(body, dict) or not isinstance(body.get("id"), int):
            raise RegistryError(f"schema registry {self.shown}: registering {subject}: an "
                                "answer without an id")
        return int(body["id"])

    async def _request(self, method: str, path: str, *, json: Any = None,
                       not_found_ok: bool = False) -> Any:
        if self._session is None:
            raise RuntimeError("RegistryClient.start() was not awaited")
        data = None if json is None else orjson.dumps(json)
        headers = None if json is None else {"Content-Type": _CONTENT_TYPE}
        try:
            async with self._session.request(method, self.url + path, data=data,
                                             headers=headers) as resp:
                raw = await resp.content.read(_MAX_ERROR_BODY) if resp.status >= 400 \
                    else await resp.read()
                status = resp.status
        except TimeoutError:
            self._on_request("timeout")
            raise RegistryError(f"schema registry {self.shown}: no answer within "
                                f"{self._timeout:g}s") from None
        except (aiohttp.ClientError, OSError) as exc:
            self._on_request("unreachable")
            raise RegistryError(f"schema registry {self.shown}: unreachable: "
                                f"{type(exc).__name__}: {exc}") from None
        if status < 300:
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                self._on_request("status")
                raise RegistryError(f"schema registry {self.shown}: HTTP {status} for {method} "
                                    f"{path} is not JSON") from None
            self._on_request("ok")
            return body
        text = raw.decode("utf-8", "replace").replace("\n", " ")
        if status == 404 and not_found_ok and _error_code(raw) == SCHEMA_NOT_FOUND:
            self._on_request("not_found")
            return None
        if status in (401, 403):
            self._on_request("refused")
            raise RegistryError(f"schema registry {self.shown}: refused (HTTP {status}): check "
                                "CONSUMER_SCHEMA_REGISTRY_USER and _PASSWORD")
        self._on_request("status")
        hint = " (is the URL the API's base, e.g. …/apis/ccompat/v7?)" if status == 404 else ""
        raise RegistryError(f"schema registry {self.shown}: HTTP {status} for {method} "
                            f"{path}{hint}: {text}")


def _error_code(raw: bytes) -> int | None:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    code = body.get("error_code") if isinstance(body, dict) else None
    return code if isinstance(code, int) else None
