"""Local broker start-up: seconds from launch to a working metadata round trip,
and the broker's resident memory then and after a small produce/consume load."""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from devtools.kafka import LocalKafka, ensure_jars


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _load(bootstrap: str, count: int = 50_000) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        for i in range(count):
            await producer.send("bench-broker", value=b"x" * 200, key=str(i % 100).encode())
        await producer.flush()
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer("bench-broker", bootstrap_servers=bootstrap,
                                auto_offset_reset="earliest", group_id="bench-broker")
    await consumer.start()
    try:
        seen = 0
        while seen < count:
            batch = await consumer.getmany(timeout_ms=1000)
            seen += sum(len(v) for v in batch.values())
    finally:
        await consumer.stop()


def main(runs: int = 3) -> None:
    ensure_jars()
    ready, rss_ready, rss_loaded = [], [], []
    for _ in range(runs):
        broker = LocalKafka()
        started = time.monotonic()
        bootstrap = broker.start()
        ready.append(time.monotonic() - started)
        assert broker.pid is not None
        rss_ready.append(rss_mib(broker.pid))
        asyncio.run(_load(bootstrap))
        rss_loaded.append(rss_mib(broker.pid))
        broker.stop()
    print(f"broker start-to-ready: median {statistics.median(ready):.2f}s "
          f"(runs: {', '.join(f'{s:.2f}' for s in ready)})")
    print(f"broker RSS at ready: median {statistics.median(rss_ready):.0f} MiB; "
          f"after 50k messages produced and consumed: {statistics.median(rss_loaded):.0f} MiB")


if __name__ == "__main__":
    main()
