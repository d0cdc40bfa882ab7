"""Tolerant decoding of fetched batches: every record the broker accepted
comes out, the ones the client cannot decode marked `Undecodable`."""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable, Sequence
from typing import Any

import cramjam
import pytest
from aiokafka.consumer.fetcher import PartitionRecords
from aiokafka.record._crc32c import crc as crc32c
from aiokafka.structs import TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from consumer.engine import wire
from consumer.types import Undecodable

READ_UNCOMMITTED = 0
TP = TopicPartition("t", 0)
Header = tuple[bytes, bytes | None]
Rec = tuple[bytes | None, bytes | None, tuple[Header, ...]]
Compress = Callable[[bytes], bytes]
CODECS: dict[str, tuple[int, Compress]] = {"none": (0, bytes), "gzip": (1, gzip.compress),
          "snappy": (2, lambda b: bytes(cramjam.snappy.compress_raw(b))),
          "lz4": (3, lambda b: bytes(cramjam.lz4.compress(b))),
          "zstd": (4, lambda b: bytes(cramjam.zstd.compress(b)))}


def _varint(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        byte = z & 0x7F
        z >>= 7
        if z:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(data: bytes | None) -> bytes:
    return _varint(-1) if data is None else _varint(len(data)) + data


def encode_batch(records: Sequence[Rec], *, base_offset: int = 0, codec: str = "none",
                 ts: int = 1_700_000_000_000) -> bytes:
    """A v2 record batch as a producer writes it, header names as raw bytes."""
    body = bytearray()
    for i, (key, value, headers) in enumerate(records):
        rec = bytes([0]) + _varint(i) + _varint(i) + _field(key) + _field(value)
        rec += _varint(len(headers)) + b"".join(_field(n) + _field(v) for n, v in headers)
        body += _varint(len(rec)) + rec
    codec_id, compress = CODECS[codec]
    payload = compress(bytes(body))
    after_crc = struct.pack(">hiqqqhii", codec_id, len(records) - 1, ts, ts + len(records),
                            -1, -1, -1, len(records)) + payload
    head = struct.pack(">ib", -1, 2)  # leader epoch, magic
    length = len(head) + 4 + len(after_crc)
    return struct.pack(">qi", base_offset, length) + head + struct.pack(
        ">I", crc32c(after_crc)) + after_crc


def consume(raw: bytes) -> list[Any]:
    """What aiokafka's own fetcher code yields from `raw` with the hook in place."""
    part = PartitionRecords(TP, wire._Records(raw), None, 0, None, None, True, READ_UNCOMMITTED)
    return list(part)


GOOD: Rec = (b"k", b'{"id": 1}', ((b"trace", b"t"),))
BAD_NAME: Rec = (b"k2", b'{"id": 2}', ((b"\xff\xfe", b"v"), (b"ok", None)))


@pytest.mark.parametrize("codec", list(CODECS))
def test_a_bad_header_name_marks_only_its_own_record(codec: str) -> None:
    raw = encode_batch([GOOD, BAD_NAME, GOOD], codec=codec)
    out = consume(raw)
    assert [r.offset for r in out] == [0, 1, 2]
    first, bad, last = out
    assert first.value == b'{"id": 1}'
    assert first.headers == (("trace", b"t"),)
    assert last.value == first.value
    value = bad.value
    assert type(value) is Undecodable
    assert value.raw == b'{"id": 2}'
    assert "not UTF-8" in value.reason
    assert bad.key == b"k2"
    assert bad.headers == (("\\xff\\xfe", b"v"), ("ok", None))


def test_clean_batches_take_the_clients_own_path() -> None:
    raw = encode_batch([GOOD, GOOD], codec="lz4") + encode_batch([GOOD], base_offset=2)
    out = consume(raw)
    assert [r.offset for r in out] == [0, 1, 2]
    assert all(type(r.value) is bytes for r in out)


def test_later_batches_of_the_same_fetch_still_come_out() -> None:
    raw = encode_batch([BAD_NAME], base_offset=0) + encode_batch([GOOD, GOOD], base_offset=1)
    out = consume(raw)
    assert [r.offset for r in out] == [0, 1, 2]
    assert [type(r.value) for r in out] == [Undecodable, bytes, bytes]


def test_a_batch_that_cannot_be_decompressed_yields_each_offset_undecodable() -> None:
    raw = bytearray(encode_batch([GOOD, GOOD, GOOD], codec="zstd", base_offset=10))
    raw[-5:] = b"\x00" * 5  # damage the compressed payload, then fix the CRC
    raw[17:21] = struct.pack(">I", crc32c(bytes(raw[21:])))
    out = consume(bytes(raw))
    assert [r.offset for r in out] == [10, 11, 12]
    assert all(type(r.value) is Undecodable and r.value.raw is None
               for r in out)
    assert "cannot decompress zstd" in out[0].value.reason


def test_a_crc_mismatch_is_undecodable_not_an_exception() -> None:
    raw = bytearray(encode_batch([GOOD, GOOD]))
    raw[-1] ^= 0xFF
    out = consume(bytes(raw))
    assert len(out) == 2
    assert all(type(r.value) is Undecodable for r in out)


def test_a_truncated_record_marks_the_rest_of_its_batch() -> None:
    raw = bytearray(encode_batch([GOOD, BAD_NAME, GOOD]))
    # Claim more headers than the second record holds: its structure breaks.
    first_len = raw[61]
    second = 61 + 1 + first_len // 2  # zigzag: the length byte holds 2*len
    records = wire.salvage(bytes(raw[:second + 4]) + b"\x7f" * (len(raw) - second - 4),
                           ValueError("x"))
    assert [r.offset for r in records] == [0, 1, 2]
    assert type(records[0].value) is bytes
    assert all(type(r.value) is Undecodable for r in records[1:])


def test_a_frame_the_client_cannot_split_ends_the_fetch_with_one_undecodable_offset() -> None:
    raw = encode_batch([GOOD], base_offset=4) + struct.pack(">qi", 5, 3) + b"abc"
    out = consume(raw)
    assert [r.offset for r in out] == [4, 5]
    assert type(out[1].value) is Undecodable


def test_a_null_key_and_value_survive_salvage() -> None:
    raw = encode_batch([(None, None, ((b"\xc3\x28", None),))])
    (rec,) = consume(raw)
    assert rec.key is None
    assert type(rec.value) is Undecodable
    assert rec.value.raw is None


names = st.binary(max_size=8)
records = st.lists(st.tuples(st.none() | st.binary(max_size=40), st.none() | st.binary(max_size=40),
                             st.lists(st.tuples(names, st.none() | st.binary(max_size=8)),
                                      max_size=4).map(tuple)), min_size=1, max_size=8)


@given(records, st.sampled_from(list(CODECS)))
def test_salvage_recovers_every_record_exactly(recs: list[Rec], codec: str) -> None:
    raw = encode_batch(recs, base_offset=7, codec=codec)
    out = wire.salvage(raw, ValueError("test"))
    assert [r.offset for r in out] == list(range(7, 7 + len(recs)))
    for got, (key, value, headers) in zip(out, recs, strict=True):
        assert got.key == key
        clean = all(_utf8(n) for n, _ in headers)
        got_value = got.value.raw if type(got.value) is Undecodable else got.value
        assert got_value == value
        assert (type(got.value) is Undecodable) == (not clean)
        assert [v for _, v in got.headers] == [v for _, v in headers]


@given(records, st.sampled_from(list(CODECS)))
def test_the_hooked_fetcher_yields_every_offset_once(recs: list[Rec], codec: str) -> None:
    out = consume(encode_batch(recs, codec=codec))
    assert [r.offset for r in out] == list(range(len(recs)))


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_install_hooks_the_fetcher_once() -> None:
    wire.install()
    wire.install()
    assert wire.installed()


def test_every_codec_is_available() -> None:
    wire.check_codecs()
