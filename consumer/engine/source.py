"""The engine's view of the Kafka client: a narrow Protocol, and the one
adapter over aiokafka that the service gives the engine.

Everything the engine needs of a consumer is here and nothing else, so the
engine can run against an in-memory fake in unit tests, and the two places
where the pinned aiokafka keeps what we need in private attributes (the
topics the broker refused, the member's generation) are read in one class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer
from aiokafka.abc import ConsumerRebalanceListener

from consumer.config import Settings
from consumer.engine import wire
from consumer.security import KafkaSecurity, kafka_security
from consumer.types import TP, Record

_NO_GENERATION = -1  # aiokafka's OffsetCommitRequest.DEFAULT_GENERATION_ID


class Consumer(Protocol):
    """A group member with manual commits. `getmany` returns what was fetched
    for unpaused assigned partitions (maybe nothing); `commit` commits the
    given offsets exactly and may raise `KafkaError`; `member_lost` is True
    while the coordinator no longer knows this member (evicted);
    `refused_topics` names subscribed topics the broker refused to us."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def subscribe(self, topics: Sequence[str], listener: ConsumerRebalanceListener) -> None: ...

    async def getmany(self, *, timeout_ms: int,
                      max_records: int | None) -> Mapping[TP, Sequence[Record]]: ...

    def assignment(self) -> set[TP]: ...

    def pause(self, *partitions: TP) -> None: ...

    def resume(self, *partitions: TP) -> None: ...

    def paused(self) -> set[TP]: ...

    def highwater(self, tp: TP) -> int | None: ...

    async def position(self, tp: TP) -> int: ...

    async def committed_offset(self, tp: TP) -> int | None: ...

    def seek(self, tp: TP, offset: int) -> None: ...

    async def end_offsets(self, partitions: Sequence[TP]) -> Mapping[TP, int]: ...

    async def commit(self, offsets: Mapping[TP, int]) -> None: ...

    def refused_topics(self) -> set[str]: ...

    def member_lost(self) -> bool: ...


class KafkaConsumer:
    """`Consumer` over aiokafka, built from `Settings`. Its fetcher decodes
    tolerantly (`consumer.engine.wire`): any record the broker accepted comes
    out of `getmany`."""

    def __init__(self, settings: Settings, security: KafkaSecurity | None = None) -> None:
        wire.install()
        self._client = AIOKafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers,
            **(security or kafka_security(settings)).options(),
            group_id=settings.group_id,
            group_instance_id=settings.group_instance_id,
            client_id=settings.client_id,
            enable_auto_commit=False,
            auto_offset_reset=settings.auto_offset_reset,
            isolation_level=settings.isolation_level,
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
            rebalance_timeout_ms=settings.rebalance_timeout_ms,
            max_poll_interval_ms=settings.max_poll_interval_ms,
            fetch_max_bytes=settings.fetch_max_bytes,
            max_partition_fetch_bytes=settings.max_partition_fetch_bytes,
            fetch_max_wait_ms=settings.fetch_max_wait_ms,
            max_poll_records=settings.max_poll_records,
        )

    async def start(self) -> None:
        await self._client.start()

    async def stop(self) -> None:
        await self._client.stop()

    def subscribe(self, topics: Sequence[str], listener: ConsumerRebalanceListener) -> None:
        self._client.subscribe(topics=list(topics), listener=listener)

    async def getmany(self, *, timeout_ms: int,
                      max_records: int | None) -> Mapping[TP, Sequence[Record]]:
        batch: Mapping[TP, Sequence[Record]] = await self._client.getmany(
            timeout_ms=timeout_ms, max_records=max_records)
        return batch

    def assignment(self) -> set[TP]:
        return set(self._client.assignment())

    def pause(self, *partitions: TP) -> None:
        self._client.pause(*partitions)

    def resume(self, *partitions: TP) -> None:
        self._client.resume(*partitions)

    def paused(self) -> set[TP]:
        return set(self._client.paused())

    def highwater(self, tp: TP) -> int | None:
        high: int | None = self._client.highwater(tp)
        return high

    async def position(self, tp: TP) -> int:
        position: int = await self._client.position(tp)
        return position

    async def committed_offset(self, tp: TP) -> int | None:
        offset: int | None = await self._client.committed(tp)
        return offset

    def seek(self, tp: TP, offset: int) -> None:
        self._client.seek(tp, offset)

    async def end_offsets(self, partitions: Sequence[TP]) -> Mapping[TP, int]:
        ends: Mapping[TP, int] = await self._client.end_offsets(list(partitions))
        return ends

    async def commit(self, offsets: Mapping[TP, int]) -> None:
        await self._client.commit(dict(offsets))

    def refused_topics(self) -> set[str]:
        """aiokafka only notes a refused topic in its cluster metadata (the
        pinned version keeps it there) and assigns nothing."""
        refused: set[str] = set(self._client._client.cluster.unauthorized_topics)
        return refused

    def member_lost(self) -> bool:
        """aiokafka resets the generation to -1 on UnknownMemberId /
        IllegalGeneration and then calls `on_partitions_revoked` (it has no
        `on_partitions_lost`)."""
        coordinator: Any = getattr(self._client, "_coordinator", None)
        return getattr(coordinator, "generation", None) == _NO_GENERATION
