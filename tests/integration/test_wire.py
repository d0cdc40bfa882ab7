"""Raw records from an outside producer (franz-go, `tests.integration.wire`)
reach the broker byte for byte, with every codec, and what aiokafka does with
the ones it cannot decode.

The reader is confluent-kafka (librdkafka): it reads every codec and does not
decode header names while fetching, so it sees what the wire carries.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import aiokafka.codec
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.consumer import fetcher
from aiokafka.errors import UnsupportedCodecError
from confluent_kafka import TIMESTAMP_CREATE_TIME, Consumer
from confluent_kafka import TopicPartition as CkTopicPartition

from consumer.engine import wire
from consumer.errors import ConfigError
from consumer.types import Undecodable
from tests.integration.wire import CODECS, WireRecord, produce_raw
from tests.support.kafka import NewTopicFactory

pytestmark = pytest.mark.integration

BAD_NAME = b"\xff\xfe"
# franz-go sends a batch uncompressed unless the codec shrinks it: this record
# makes every batch worth compressing, so the codec is really on the wire.
PADDING = WireRecord(key=b"padding", value=b"0123456789abcdef" * 256, partition=0)

EDGE_RECORDS = (
    PADDING,
    WireRecord(key=None, value=b"null key", partition=0),
    WireRecord(key=b"null value", value=None, partition=0),
    WireRecord(key=None, value=None, partition=0),
    WireRecord(key=b"", value=b"", partition=0),
    WireRecord(key=b"\xff\x00\xc3\x28", value=b"\x80\xfe\x00 not utf-8 \xed\xa0\x80",
               partition=0),
    WireRecord(key=b"headers", value=b"v", partition=0, headers=(
        (b"null", None), (b"empty", b""), (b"bytes", b"\x00\xff\xc3\x28"),
        (b"dup", b"1"), (b"dup", b"2"), (b"", b"empty name"),
    )),
    WireRecord(key=b"ts", value=b"v", partition=0, timestamp_ms=1_700_000_000_123),
)


def read_back(bootstrap: str, topic: str, count: int, timeout: float = 30.0) -> list[Any]:
    """`count` records of partition 0 from offset 0, as confluent-kafka
    Messages (blocking)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "wire-reader",
                         "enable.auto.commit": False})
    try:
        consumer.assign([CkTopicPartition(topic, 0, 0)])
        got: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=count - len(got), timeout=1.0):
                assert message.error() is None, message.error()
                got.append(message)
        return got
    finally:
        consumer.close()


def end_offset(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "wire-reader"})
    try:
        _low, high = consumer.get_watermark_offsets(CkTopicPartition(topic, 0), timeout=10)
        return int(high)
    finally:
        consumer.close()


def headers_of(message: Any) -> tuple[tuple[bytes, bytes | None], ...]:
    # confluent-kafka gives None for "no headers" and names as str.
    return tuple((name.encode(), value) for name, value in message.headers() or ())


async def produce(bootstrap: str, topic: str, records: Sequence[WireRecord],
                  codec: str) -> list[tuple[int, int]]:
    """`records` through the franz-go producer (`wire.produce_raw`): header
    names of any bytes, real nulls, every codec — what aiokafka cannot send;
    with a codec, it must be on the wire. (partition, offset) per record."""
    return await asyncio.to_thread(produce_raw, bootstrap, topic, records, codec,
                                   require_codec=codec != "none")


@pytest.mark.parametrize("codec", CODECS)
async def test_nulls_empties_and_any_bytes_round_trip_with_each_codec(
        kafka_bootstrap: str, new_topic: NewTopicFactory, codec: str) -> None:
    topic = await new_topic("wire")
    placed = await produce(kafka_bootstrap, topic, EDGE_RECORDS, codec)
    assert placed == [(0, offset) for offset in range(len(EDGE_RECORDS))]

    got = await asyncio.to_thread(read_back, kafka_bootstrap, topic, len(EDGE_RECORDS))
    assert [m.offset() for m in got] == [offset for _, offset in placed]
    for sent, message in zip(EDGE_RECORDS, got, strict=True):
        assert message.key() == sent.key
        assert message.value() == sent.value
        assert headers_of(message) == sent.headers
        if sent.timestamp_ms is not None:
            assert message.timestamp() == (TIMESTAMP_CREATE_TIME, sent.timestamp_ms)


@pytest.mark.parametrize("codec", CODECS)
async def test_a_header_name_that_is_not_utf8_is_accepted_amid_good_records(
        kafka_bootstrap: str, new_topic: NewTopicFactory, codec: str) -> None:
    topic = await new_topic("wire-name")
    records = [
        PADDING,
        WireRecord(key=b"before", value=b"good", headers=((b"ok", b"1"),), partition=0),
        WireRecord(key=b"bad", value=b"payload", headers=((BAD_NAME, b"v"),), partition=0),
        WireRecord(key=b"after", value=b"good", headers=((b"ok", b"2"),), partition=0),
    ]
    # One flush, one partition: all four share one (compressed) batch, and the
    # producer checked the codec was used.
    placed = await produce(kafka_bootstrap, topic, records, codec)
    assert placed == [(0, 0), (0, 1), (0, 2), (0, 3)]
    assert await asyncio.to_thread(end_offset, kafka_bootstrap, topic) == 4

    got = await asyncio.to_thread(read_back, kafka_bootstrap, topic, 4)
    assert [(m.offset(), m.key(), m.value()) for m in got] == [
        (i, r.key, r.value) for i, r in enumerate(records)]
    assert headers_of(got[1]) == ((b"ok", b"1"),)
    assert headers_of(got[3]) == ((b"ok", b"2"),)
    # Not got[2].headers(): confluent-kafka 2.16 cannot hand that name to
    # Python; it raises SystemError (from UnicodeDecodeError) and may leave the
    # error set, so a later unrelated call raises a spurious SystemError.


async def first_fetch(bootstrap: str, topic: str, wait: float = 20.0) -> list[Any]:
    """Fetches partition 0 with aiokafka until it returns records (or raises)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while loop.time() < deadline:
            if batch := await consumer.getmany(timeout_ms=500):
                return [r for records in batch.values() for r in records]
        raise AssertionError(f"nothing fetched from {topic} in {wait}s")
    finally:
        await consumer.stop()


@pytest.fixture
def client_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiokafka's fetcher as it ships, without the service's tolerant hook."""
    monkeypatch.setattr(fetcher, "MemoryRecords", wire._CLIENT_RECORDS)


@pytest.mark.usefixtures("client_decoding")
async def test_aiokafka_getmany_raises_on_a_header_name_that_is_not_utf8(
        kafka_bootstrap: str, new_topic: NewTopicFactory) -> None:
    """The behaviour the service must handle: the batch decoder decodes
    header names strictly, inside getmany. With the C extension (what
    aiokafka installs here) the error is a bare UnicodeDecodeError; the pure
    Python decoder wraps it in CorruptRecordException."""
    topic = await new_topic("wire-aiokafka")
    await produce(kafka_bootstrap, topic, [
        PADDING, WireRecord(key=b"bad", value=b"v", headers=((BAD_NAME, b"v"),), partition=0),
    ], "gzip")
    with pytest.raises(UnicodeDecodeError):
        await first_fetch(kafka_bootstrap, topic)


@pytest.mark.parametrize("codec", CODECS)
async def test_with_the_hook_getmany_hands_out_the_bad_record_undecodable(
        kafka_bootstrap: str, new_topic: NewTopicFactory, codec: str) -> None:
    """The same batch through `consumer.engine.wire`: every record comes
    out, only the bad one marked, its value and key recovered."""
    wire.install()
    topic = await new_topic("wire-hooked")
    await produce(kafka_bootstrap, topic, [
        PADDING, WireRecord(key=b"bad", value=b"payload", headers=((BAD_NAME, b"v"),),
                            partition=0),
        WireRecord(key=b"after", value=b"good", partition=0)], codec)
    got = await first_fetch(kafka_bootstrap, topic)
    assert [r.offset for r in got] == [0, 1, 2]
    assert [type(r.value) for r in got] == [bytes, Undecodable, bytes]
    bad = got[1]
    assert bad.key == b"bad"
    assert bad.value.raw == b"payload"
    assert "not UTF-8" in bad.value.reason
    assert bad.headers == (("\\xff\\xfe", b"v"),)


@pytest.mark.usefixtures("client_decoding")
@pytest.mark.parametrize("codec", ["snappy", "lz4", "zstd"])
async def test_aiokafka_getmany_raises_unsupported_codec_without_cramjam(
        kafka_bootstrap: str, new_topic: NewTopicFactory, codec: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Why the service checks its codecs at start (`wire.check_codecs`)."""
    topic = await new_topic("wire-codec")
    await produce(kafka_bootstrap, topic, [PADDING], codec)
    # aiokafka checks for its codec library at decode time, through this name.
    monkeypatch.setattr(aiokafka.codec, "cramjam", None)
    with pytest.raises(UnsupportedCodecError, match=codec):
        await first_fetch(kafka_bootstrap, topic)
    with pytest.raises(ConfigError, match=codec):
        wire.check_codecs()
