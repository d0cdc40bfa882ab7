"""The group's lag, sampled once a second for the whole run: end offsets of
the topic minus the group's committed offsets, read from the broker with
fresh clients each time (they ride through broker restarts); None while the
broker does not answer. Also the run's clock."""

from __future__ import annotations

import asyncio
import contextlib
import time

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

LagSample = tuple[float, int | None]  # (seconds since start, total lag or None if unknown)


class LagMonitor:
    """Total lag of the group (end offsets minus committed) once a second;
    None while the broker does not answer."""

    def __init__(self, bootstrap: str, group: str, topic: str, partitions: int,
                 clock: Clock) -> None:
        self._bootstrap = bootstrap
        self._group = group
        self._tps = [TopicPartition(topic, p) for p in range(partitions)]
        self._clock = clock
        self.samples: list[LagSample] = []
        self._task: asyncio.Task[None] | None = None

    async def total(self) -> int | None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap, request_timeout_ms=3000)
        consumer = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, request_timeout_ms=3000)
        try:
            async with asyncio.timeout(5):
                await admin.start()
                await consumer.start()
                committed = await admin.list_consumer_group_offsets(self._group)
                ends = await consumer.end_offsets(self._tps)
        except Exception:  # noqa: BLE001 - broker away: no sample
            return None
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), 3)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(admin.close(), 3)
        total: int = sum(ends[tp] - (committed[tp].offset if tp in committed else 0)
                         for tp in self._tps)
        return total

    def start(self) -> None:
        self._task = asyncio.create_task(self._routine(), name="chaos-lag")

    async def _routine(self) -> None:
        while True:
            began = time.monotonic()
            sample = (self._clock.now(), await self.total())
            self.samples.append(sample)
            if len(self.samples) % 15 == 0:
                print(f"chaos: t={sample[0]:.0f}s lag={sample[1]}", flush=True)
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - began)))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def drained(self, limit: float, stall: float = 60.0) -> bool:
        """Wait until a sample says lag 0. False after `limit` seconds, or
        once the lag has not reached a new low for `stall` seconds: a slow
        machine may take long, a stuck group never gets there."""
        began = last_low = time.monotonic()
        low: int | None = None
        while time.monotonic() - began < limit and time.monotonic() - last_low < stall:
            value = self.samples[-1][1] if self.samples else None
            if value == 0:
                return True
            if value is not None and (low is None or value < low):
                low, last_low = value, time.monotonic()
            await asyncio.sleep(0.5)
        return False


class Clock:
    """Seconds since the run began, in this process and from other
    processes' monotonic nanoseconds (the same clock on one machine)."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def of_ns(self, ns: int) -> float:
        return ns / 1e9 - self.t0
