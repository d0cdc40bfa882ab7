"""Raw records on the wire, written by an outside client.

`produce_raw` runs `wire-producer` (scripts/wire-producer/, franz-go: the
client a Go service would use), built once by `scripts/build-wire-producer.sh`
into a user-level cache keyed by a hash of its source. It writes what no
Python client here can: any bytes in a header *name*, real nulls in key,
value and header values, and every codec Kafka has. Blocking; call it from a
thread (`asyncio.to_thread`) inside a running event loop.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from consumer.dev.ports import project_root

BUILD_SCRIPT = project_root() / "scripts" / "build-wire-producer.sh"
CODECS = ("none", "gzip", "snappy", "lz4", "zstd")


@dataclass(frozen=True, slots=True)
class WireRecord:
    """One record as the wire carries it: `None` is Kafka's null (length -1),
    `b""` an empty field. `partition=None` lets the producer's default
    partitioner choose; `timestamp_ms=None` is the time of producing."""

    key: bytes | None = None
    value: bytes | None = None
    headers: tuple[tuple[bytes, bytes | None], ...] = field(default=())
    partition: int | None = None
    timestamp_ms: int | None = None


def wire_producer_binary() -> Path:
    """The cached binary, built first when missing (about a minute, once;
    `make test` builds it before pytest)."""
    path = subprocess.run(["bash", str(BUILD_SCRIPT), "--print"], check=True,
                          capture_output=True, text=True).stdout.strip()
    subprocess.run(["bash", str(BUILD_SCRIPT)], check=True)
    return Path(path)


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _line(topic: str, record: WireRecord) -> str:
    return json.dumps({
        "topic": topic,
        "partition": record.partition,
        "key": _b64(record.key),
        "value": _b64(record.value),
        "headers": [[_b64(name), _b64(value)] for name, value in record.headers],
        "timestamp_ms": record.timestamp_ms,
    })


class WireProduceError(RuntimeError):
    """The producer refused its input or a record was not acknowledged."""


def produce_raw(bootstrap: str, topic: str, records: Sequence[WireRecord],
                codec: str = "none", *, require_codec: bool = False,
                timeout: float = 60.0) -> list[tuple[int, int]]:
    """Writes `records` to `topic` with one flush, so records bound for one
    partition share a record batch (one compressed payload with a codec), and
    returns (partition, offset) per record, in order, once all are
    acknowledged (acks=all, idempotent).

    franz-go sends a batch uncompressed when the codec would not shrink it;
    `require_codec=True` makes that an error, so a caller knows the codec was
    on the wire (give it a compressible record; the records are written all
    the same). Raises `WireProduceError`
    when a record fails, `subprocess.TimeoutExpired` past `timeout` seconds.
    """
    if codec not in CODECS:
        raise ValueError(f"codec {codec!r}: one of {', '.join(CODECS)}")
    args = [str(wire_producer_binary()), "--brokers", bootstrap, "--codec", codec,
            "--timeout", f"{max(1.0, timeout - 5):.0f}s"]
    if require_codec:
        args.append("--require-codec")
    stdin = "".join(_line(topic, r) + "\n" for r in records)
    done = subprocess.run(args, input=stdin, capture_output=True, text=True,
                          timeout=timeout, check=False)
    if done.returncode != 0:
        raise WireProduceError(done.stderr.strip() or f"exit {done.returncode}")
    lines = done.stdout.splitlines()
    if len(lines) != len(records):
        raise WireProduceError(f"{len(lines)} results for {len(records)} records")
    placed = [json.loads(line) for line in lines]
    return [(int(p["partition"]), int(p["offset"])) for p in placed]
