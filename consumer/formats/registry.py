"""`RegistryFormat`: the `ValueFormat` of values in a Schema Registry's wire
format (avro, json_schema, auto). Fetches each writer schema once — a
bounded cache, one request per id however many workers miss it at once —
and decodes with it (`consumer.formats.decode`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from consumer.errors import RegistryError
from consumer.formats.cache import SchemaCache
from consumer.formats.client import RegistryClient
from consumer.formats.decode import AVRO, JSON, WriterSchema, decode, parse
from consumer.formats.wire import MAGIC, PREFIX_BYTES
from consumer.types import Undecodable
from schemas import Event, InvalidEvent, Reason, validate

if TYPE_CHECKING:
    from consumer.observability.metrics import Metrics

log = logging.getLogger("consumer.formats")

#: How long an id the registry does not know is believed unknown: a burst of
#: records with a bad id costs one request, and a schema registered late is
#: found after at most this long.
UNKNOWN_TTL = 30.0
#: The value formats and the registry schema types each accepts.
ACCEPTS = {"avro": frozenset({AVRO}), "json_schema": frozenset({JSON}),
           "auto": frozenset({AVRO, JSON})}


class RegistryFormat:
    """See the module docstring. `start()` opens the client and checks access
    (raises `RegistryError`: the service exits 1 with its one line);
    `prepare` then `decode` per value; `unready()` says why records wait;
    `close()` is safe twice.

    `decode` contract: returns the validated `Event` or raises `InvalidEvent`
    (`undecodable`, `unknown_schema`, or the model's reasons) whose
    `schema_id` is set for wire-format values. It must follow a `prepare` of
    the same values; a value whose schema was not prepared raises
    `RegistryError` (a bug, never a dead letter)."""

    def __init__(self, client: RegistryClient, *, value_format: str, allow_unknown: bool = False,
                 capacity: int = 10_000, metrics: Metrics | None = None) -> None:
        self.client = client
        self.value_format = value_format
        self._accepts = ACCEPTS[value_format]
        self._plain_json = value_format == "auto"
        self._allow_unknown = allow_unknown
        self._cache: SchemaCache[WriterSchema] = SchemaCache(capacity, UNKNOWN_TTL)
        self._inflight: dict[int, asyncio.Task[None]] = {}
        self._failing: str | None = None
        self._hits = None if metrics is None else metrics.schema_cache_hits
        self._misses = None if metrics is None else metrics.schema_cache_misses

    async def start(self) -> None:
        await self.client.start()
        await self.client.check()

    async def close(self) -> None:
        """Safe twice: cancels the fetches under way, closes the client."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.client.close()

    def unready(self) -> list[str]:
        return [] if self._failing is None else [self._failing]

    async def prepare(self, values: Sequence[bytes | Undecodable | None]) -> None:
        """Fetch the writer schema of every wire-format value that is neither
        cached nor known to be unknown. Raises `RegistryError` (retriable)
        when the registry cannot answer; an unknown id is remembered, not
        raised."""
        now = time.monotonic()
        missing: set[int] = set()
        needs_fetch = self._cache.needs_fetch
        hits = 0
        for value in values:
            if type(value) is not bytes or len(value) < PREFIX_BYTES or value[0] != MAGIC:
                continue
            sid = int.from_bytes(value[1:PREFIX_BYTES], "big")
            if sid in missing or needs_fetch(sid, now):
                missing.add(sid)
            else:
                hits += 1
        if self._hits is not None and hits:
            self._hits.inc(hits)
        if not missing:
            return
        if self._misses is not None:
            self._misses.inc(len(missing))
        tasks = [self._fetching(sid) for sid in sorted(missing)]
        # Shielded: a waiter cancelled (its worker stopping) must not cancel
        # the fetch other waiters share.
        results = await asyncio.gather(*(asyncio.shield(t) for t in tasks),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def _fetching(self, sid: int) -> asyncio.Task[None]:
        task = self._inflight.get(sid)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._fetch(sid))
            self._inflight[sid] = task
            task.add_done_callback(lambda _t: self._inflight.pop(sid, None))
        return task

    async def _fetch(self, sid: int) -> None:
        try:
            registered = await self.client.schema(sid)
        except RegistryError as exc:
            if self._failing is None:
                log.warning("%s; records that need schema %d wait", exc, sid)
            self._failing = str(exc)
            raise
        if self._failing is not None:
            log.info("schema registry %s answers again", self.client.shown)
        self._failing = None
        if registered is None:
            log.warning("schema id %d is not in the registry %s: its records are dead-lettered "
                        "as unknown_schema", sid, self.client.shown)
            self._cache.put_unknown(sid, time.monotonic())
        else:
            self._cache.put(sid, parse(registered, self._accepts))

    def decode(self, value: bytes | Undecodable | None) -> Event:
        if type(value) is not bytes:
            if type(value) is Undecodable:
                raise InvalidEvent(Reason.UNDECODABLE, value.reason)
            raise InvalidEvent(Reason.EMPTY, "the record has no value")
        if len(value) < PREFIX_BYTES or value[0] != MAGIC:
            if self._plain_json:
                return validate(value, allow_unknown=self._allow_unknown)
            raise InvalidEvent(Reason.UNDECODABLE, "not in the schema registry's wire format "
                               f"(a zero byte and a 4-byte schema id; CONSUMER_VALUE_FORMAT="
                               f"{self.value_format})")
        sid = int.from_bytes(value[1:PREFIX_BYTES], "big")
        writer = self._cache.get(sid)
        if writer is None:
            if self._cache.is_unknown(sid):
                raise InvalidEvent(Reason.UNKNOWN_SCHEMA, f"schema id {sid} is not in the "
                                   f"registry {self.client.shown}", schema_id=sid)
            raise RegistryError(f"schema {sid} was not prepared before decoding")
        return decode(value, writer, allow_unknown=self._allow_unknown)
