"""The chaos run's traffic: valid sample events with one invalid record in
every `invalid_every`, at a steady rate, for a fixed time.

Run as its own process (`python -m chaos.producer ...`) through
`consumer.produce.produce_events`, the engine behind `consumer produce`
(idempotent producer, paced, every wait bounded). A broker restart can make
it give up on a send: it then carries on with the next record. What reached
the topic is read back from the topic itself by the accounting step, so a
record whose fate the producer never learnt is still counted right.
The last stdout line is the summary as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson

from consumer.produce import KeyValue, ProduceError, produce_events
from devtools.ports import project_root
from schemas.samples import invalid_samples, sample_bytes


async def traffic(seconds: float, invalid_every: int, seed: int) -> AsyncIterator[KeyValue]:
    """Records until `seconds` passed; invalid ones are unkeyed, as
    `consumer produce --allow-invalid` sends them."""
    rng = random.Random(seed)
    bad = itertools.cycle([value for _, value in invalid_samples()])
    deadline = time.monotonic() + seconds
    for i in itertools.count():
        if time.monotonic() >= deadline:
            return
        if invalid_every and i % invalid_every == invalid_every - 1:
            yield None, next(bad)
        else:
            yield sample_bytes(i, rng=rng)


async def produce(bootstrap: str, topic: str, *, rate: float, seconds: float,
                  invalid_every: int, seed: int) -> dict[str, int]:
    records = traffic(seconds, invalid_every, seed)
    sent = failed = restarts = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            summary = await produce_events(bootstrap, topic, records, rate=rate,
                                           client_id="chaos-producer", send_timeout=60.0)
        except ProduceError as exc:
            # The broker is away: try again with the next record.
            restarts += 1
            print(f"producer: {exc}; carrying on", file=sys.stderr, flush=True)
            await asyncio.sleep(1.0)
            continue
        sent += summary.sent
        failed += summary.failed
        break
    return {"sent": sent, "failed": failed, "restarts": restarts}


class Producer:
    """The traffic as a child process; `stop()` by its pid, also on failure."""

    def __init__(self, bootstrap: str, topic: str, *, rate: float, invalid_every: int,
                 seed: int, log: Path) -> None:
        self._argv = [sys.executable, "-m", "chaos.producer", "--bootstrap", bootstrap,
                      "--topic", topic, "--rate", str(rate),
                      "--invalid-every", str(invalid_every), "--seed", str(seed)]
        self._log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, seconds: float) -> None:
        with self._log.open("ab") as err:
            self.proc = subprocess.Popen([*self._argv, "--seconds", str(seconds)],
                                         cwd=project_root(),
                                         stdout=subprocess.PIPE, stderr=err)

    async def wait(self) -> dict[str, int]:
        assert self.proc is not None
        out, _ = await asyncio.to_thread(self.proc.communicate)
        lines = out.decode(errors="replace").strip().splitlines()
        summary: dict[str, int] = orjson.loads(lines[-1]) if lines else {}
        return summary

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--invalid-every", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    result = asyncio.run(produce(args.bootstrap, args.topic, rate=args.rate,
                                 seconds=args.seconds, invalid_every=args.invalid_every,
                                 seed=args.seed))
    print(orjson.dumps(result).decode(), flush=True)


if __name__ == "__main__":
    main()
