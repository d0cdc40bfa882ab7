"""Records the Kafka client cannot decode: recovered, marked, never fatal.

aiokafka decodes a fetched batch strictly while `getmany` drains it: a
header *name* that is not UTF-8 (any Go or librdkafka producer may send one),
a codec it has no library for, a CRC mismatch or a malformed record raises
out of `getmany`. That is worse than one lost record: the fetcher has
already advanced the positions of the other partitions drained in the same
call, so their records are gone too, and the same batch raises again after
a restart — a crash loop that stops every partition.

So the fetcher is handed batches that never raise. `install()` wraps the
record sets aiokafka's fetcher builds (`aiokafka.consumer.fetcher.MemoryRecords`,
looked up there at each fetch, so one module global is the whole hook; no
fork, nothing else changed): each batch is decoded by the client's own fast
C path, and only when that fails is it decoded again here, tolerantly, from
its raw bytes. Every record that decodes cleanly comes out as usual, so only
the bad record is affected; a bad one comes out with its offset and an
`Undecodable` value carrying what could be recovered and why, which the
pipeline dead-letters with reason `undecodable`. A batch that cannot be
decompressed at all yields one such record per offset it spans, so the
partition still moves on.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import codec
from aiokafka.consumer import fetcher as _fetcher
from aiokafka.errors import CorruptRecordException

from consumer.errors import ConfigError
from consumer.types import Undecodable

#: The v2 batch header (magic 2): base offset, length, leader epoch, magic,
#: crc, attributes, last offset delta, first and max timestamp, producer id,
#: producer epoch, base sequence, record count.
_HEADER = struct.Struct(">qiibIhiqqqhii")
_FRAME = struct.Struct(">qi")  # base offset and length lead every batch format
_CODEC_MASK = 0x07
_LOG_APPEND_TIME = 0x08
_DECODERS = {1: ("gzip", codec.gzip_decode), 2: ("snappy", codec.snappy_decode),
             3: ("lz4", codec.lz4_decode), 4: ("zstd", codec.zstd_decode)}
_CODEC_CHECKS = {"gzip": codec.has_gzip, "snappy": codec.has_snappy,
                 "lz4": codec.has_lz4, "zstd": codec.has_zstd}


@dataclass(frozen=True, slots=True)
class Salvaged:
    """A record decoded here; the attributes aiokafka's fetcher reads."""

    offset: int
    timestamp: int
    timestamp_type: int
    key: bytes | None
    value: bytes | Undecodable | None
    headers: tuple[tuple[str, bytes | None], ...]
    checksum: None = None


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """A zigzag varint at `pos` → (value, next position). Raises IndexError or
    ValueError on truncated or overlong input. (Not aiokafka's
    `record.util.decode_varint`: its C version reads past the end of a
    truncated buffer, and salvage exists for exactly such bytes.)"""
    shift = result = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _chunk(buf: bytes, pos: int) -> tuple[bytes | None, int]:
    """A length-prefixed byte string (length -1: null)."""
    size, pos = _varint(buf, pos)
    if size < 0:
        return None, pos
    end = pos + size
    if end > len(buf):
        raise ValueError(f"field of {size} bytes runs past the batch")
    return buf[pos:end], end


def _record(buf: bytes, pos: int, base_offset: int, base_ts: int, *, max_ts: int,
            log_append: bool) -> tuple[Salvaged, int]:
    """One record at `pos`. Header names that are not UTF-8 are kept escaped
    (`\\xff`) and make the record `Undecodable`; a structure error raises."""
    length, pos = _varint(buf, pos)
    end = pos + length
    pos += 1  # attributes: unused
    ts_delta, pos = _varint(buf, pos)
    offset_delta, pos = _varint(buf, pos)
    key, pos = _chunk(buf, pos)
    value, pos = _chunk(buf, pos)
    count, pos = _varint(buf, pos)
    headers: list[tuple[str, bytes | None]] = []
    problems: list[str] = []
    for i in range(count):
        name, pos = _chunk(buf, pos)
        data, pos = _chunk(buf, pos)
        raw_name = name or b""
        try:
            text = raw_name.decode("utf-8")
        except UnicodeDecodeError:
            text = raw_name.decode("utf-8", "backslashreplace")
            problems.append(f"header #{i} name {text!r} is not UTF-8")
        headers.append((text, data))
    if pos != end:
        raise ValueError(f"record length {length} does not match its fields")
    out: bytes | Undecodable | None = value
    if problems:
        out = Undecodable(value, "; ".join(problems))
    return Salvaged(base_offset + offset_delta, max_ts if log_append else base_ts + ts_delta,
                    int(log_append), key, out, tuple(headers)), end


def _broken(first: int, last: int, ts: int, reason: str) -> list[Salvaged]:
    return [Salvaged(o, ts, 0, None, Undecodable(None, reason), ())
            for o in range(first, last + 1)]


def salvage(batch: bytes, cause: BaseException, *, intact: bool = True) -> list[Salvaged]:
    """Decode one batch (its raw bytes, header included) record by record,
    never raising: clean records as they are, bad ones `Undecodable`; past a
    structure error, or when the records cannot be decompressed, one
    `Undecodable` per remaining offset. `cause` is what the client raised.
    A batch that is not `intact` (its CRC does not match) is read as far as
    it goes, but every record of it is `Undecodable`: its bytes are suspect."""
    if not intact:
        return [Salvaged(r.offset, r.timestamp, r.timestamp_type, r.key,
                         Undecodable(r.value, f"batch CRC mismatch ({cause})"), r.headers)
                if r.value is None or type(r.value) is bytes else r
                for r in salvage(batch, cause)]
    why = f"{type(cause).__name__}: {cause}"
    base, _ = _FRAME.unpack_from(batch)
    if len(batch) < _HEADER.size or batch[16] != 2:
        # Message formats 0 and 1 carry no headers and are not salvaged: the
        # offsets are all that can be told apart.
        return _broken(base, base, -1, f"undecodable batch: {why}")
    (_, _, _, _, _, attrs, last_delta, base_ts, max_ts, _, _, _,
     count) = _HEADER.unpack_from(batch)
    body: bytes = batch[_HEADER.size:]
    codec_id = attrs & _CODEC_MASK
    if codec_id:
        if codec_id not in _DECODERS:
            return _broken(base, base + last_delta, base_ts, f"unknown codec {codec_id} ({why})")
        name, decode = _DECODERS[codec_id]
        try:
            body = decode(body)
        except Exception as exc:  # noqa: BLE001 - any failure: nothing inside can be read
            return _broken(base, base + last_delta, base_ts,
                           f"cannot decompress {name} batch: {exc!r} ({why})")
    out: list[Salvaged] = []
    pos = 0
    for _ in range(count):
        try:
            record, pos = _record(body, pos, base, base_ts, max_ts=max_ts,
                                  log_append=bool(attrs & _LOG_APPEND_TIME))
        except (IndexError, ValueError) as exc:
            first = out[-1].offset + 1 if out else base
            out.extend(_broken(first, base + last_delta, base_ts,
                               f"malformed record: {exc} ({why})"))
            break
        out.append(record)
    return out


class _Batch:
    """One batch of the client's own record set. Iterating it decodes with
    the client's C path and falls back to `salvage` on any failure; the CRC
    is checked there too, so the fetcher's own check (which raises out of
    `getmany`) always passes."""

    __slots__ = ("_batch", "_end", "_raw", "_start")

    def __init__(self, batch: Any, raw: Any, start: int, end: int) -> None:
        self._batch = batch
        # Where the batch lies in the fetched bytes: copied only to salvage it.
        self._raw = raw
        self._start = start
        self._end = end

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)

    def validate_crc(self) -> bool:
        return True

    def __next__(self) -> Any:  # the fetcher reads a control batch's marker this way
        return next(self._batch)

    def __iter__(self) -> Iterator[Any]:
        batch = self._batch
        try:
            if batch.validate_crc():
                return iter(list(batch))
            cause: BaseException = CorruptRecordException("CRC mismatch")
            intact = False
        except Exception as exc:  # noqa: BLE001 - whatever the client raised: salvage
            cause, intact = exc, True
        return iter(salvage(bytes(self._raw[self._start:self._end]), cause, intact=intact))


class _Records:
    """aiokafka's record set over one partition's fetched bytes, handing out
    `_Batch`es that know their own raw bytes."""

    __slots__ = ("_broken", "_pos", "_raw", "_records")

    def __init__(self, raw: Any) -> None:
        self._records = _CLIENT_RECORDS(raw)
        self._raw = raw
        self._pos = 0
        self._broken = False

    def size_in_bytes(self) -> int:
        size: int = self._records.size_in_bytes()
        return size

    def has_next(self) -> bool:
        has: bool = not self._broken and self._records.has_next()
        return has

    def next_batch(self) -> _Batch | _BrokenBatch | None:
        start = self._pos
        try:
            batch = self._records.next_batch()
        except Exception as exc:  # noqa: BLE001 - a frame the client cannot even split off
            # The rest of this fetch is unreadable: hand out its first offset
            # as undecodable and stop; the next fetch starts after it.
            self._broken = True
            base = _FRAME.unpack_from(self._raw, start)[0] if len(self._raw) - start >= 8 else -1
            return _BrokenBatch(base, f"unreadable batch frame: {type(exc).__name__}: {exc}")
        if batch is None:
            return None
        _, length = _FRAME.unpack_from(self._raw, start)
        self._pos = start + _FRAME.size + length
        return _Batch(batch, self._raw, start, self._pos)


class _BrokenBatch:
    """A batch whose frame could not be read: one undecodable offset."""

    producer_id = None
    is_control_batch = False
    is_transactional = False

    def __init__(self, base: int, reason: str) -> None:
        self.base_offset = base
        self.next_offset = base + 1
        self._reason = reason

    def validate_crc(self) -> bool:
        return True

    def __iter__(self) -> Iterator[Salvaged]:
        return iter(_broken(self.base_offset, self.base_offset, -1, self._reason))


_CLIENT_RECORDS = _fetcher.MemoryRecords


def install() -> None:
    """Make the Kafka client's fetcher decode tolerantly (idempotent)."""
    _fetcher.MemoryRecords = _Records


def installed() -> bool:
    return _fetcher.MemoryRecords is _Records


def check_codecs(names: Sequence[str] = ("gzip", "snappy", "lz4", "zstd")) -> None:
    """Raise `ConfigError` naming every codec whose library is missing: a
    topic may hold any of them, and the fetch must never meet one it lacks."""
    missing = [n for n in names if not _CODEC_CHECKS[n]()]
    if missing:
        raise ConfigError(f"compression codec(s) {', '.join(missing)} unavailable: install "
                          "the 'cramjam' package (consumer depends on it)")
