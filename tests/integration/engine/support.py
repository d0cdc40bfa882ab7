"""Helpers for the engine tests: keyed traffic and the handled-records file."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from schemas.samples import sample_event


@dataclass(frozen=True)
class Handled:
    partition: int
    offset: int
    key: str
    at_ns: int


async def produce_keyed(bootstrap: str, topic: str, count: int, keys: int) -> set[tuple[int, int]]:
    """`count` valid events with `keys` distinct keys; returns (partition, offset) of each."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=10)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, orjson.dumps(sample_event(i)), key=f"k{i % keys}".encode())
            for i in range(count)
        ]
        sent = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return {(meta.partition, meta.offset) for meta in sent}


def read_handled(path: Path) -> list[Handled]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 4:
            out.append(Handled(int(parts[0]), int(parts[1]), parts[2], int(parts[3])))
    return out
