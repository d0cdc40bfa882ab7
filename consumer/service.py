"""Composition root: builds the pipeline from Settings and owns its lifecycle."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiokafka import AIOKafkaConsumer

from consumer.config import Settings

log = logging.getLogger("consumer")


async def _consume_and_log(settings: Settings) -> None:
    consumer = AIOKafkaConsumer(
        *settings.topics,
        bootstrap_servers=settings.bootstrap_servers,
        group_id=settings.group_id,
        enable_auto_commit=False,
        auto_offset_reset=settings.auto_offset_reset,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                log.info("%s[%d] %d records up to offset %d",
                         tp.topic, tp.partition, len(records), records[-1].offset)
                await consumer.commit({tp: records[-1].offset + 1})
    finally:
        await consumer.stop()


def main(settings: Settings) -> int:
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(_consume_and_log(settings))
    return 0
