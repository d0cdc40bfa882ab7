"""The registry's answers, remembered: writer schemas by id (bounded, least
recently used out first) and ids the registry said it does not know (for a
while, so a burst of records with a bad id is one request, and an id
registered later is found once the while is over). Pure: `now` is an
argument; no I/O, no asyncio."""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

S = TypeVar("S")


class SchemaCache(Generic[S]):
    """`capacity` known schemas and at most `capacity` unknown ids, each
    unknown id remembered for `unknown_ttl` seconds.

    Capacity must cover the distinct ids of every record in flight (the
    service sizes it from `CONSUMER_MAX_IN_FLIGHT`): a schema fetched for a
    record is then still here when that record is decoded."""

    __slots__ = ("_known", "_unknown", "capacity", "unknown_ttl")

    def __init__(self, capacity: int, unknown_ttl: float) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.unknown_ttl = unknown_ttl
        self._known: OrderedDict[int, S] = OrderedDict()
        self._unknown: dict[int, float] = {}  # id -> until (insertion order = age)

    def get(self, schema_id: int) -> S | None:
        """The schema of `schema_id`, marked as recently used; None if not held."""
        schema = self._known.get(schema_id)
        if schema is not None:
            self._known.move_to_end(schema_id)
        return schema

    def is_unknown(self, schema_id: int) -> bool:
        """Whether the registry said it does not know `schema_id` (expired or
        not: decoding trusts the last answer)."""
        return schema_id in self._unknown

    def needs_fetch(self, schema_id: int, now: float) -> bool:
        """Neither a held schema nor a fresh "unknown": ask the registry."""
        if schema_id in self._known:
            self._known.move_to_end(schema_id)
            return False
        until = self._unknown.get(schema_id)
        return until is None or now >= until

    def put(self, schema_id: int, schema: S) -> None:
        self._unknown.pop(schema_id, None)
        self._known[schema_id] = schema
        self._known.move_to_end(schema_id)
        while len(self._known) > self.capacity:
            self._known.popitem(last=False)

    def put_unknown(self, schema_id: int, now: float) -> None:
        self._known.pop(schema_id, None)
        self._unknown.pop(schema_id, None)  # re-inserted: the newest again
        self._unknown[schema_id] = now + self.unknown_ttl
        while len(self._unknown) > self.capacity:
            del self._unknown[next(iter(self._unknown))]

    def __len__(self) -> int:
        return len(self._known)
