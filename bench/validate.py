"""Validation from bytes on one core: events per second, valid and invalid.

Goal (issue 4): at least 200,000 valid events/s. The inputs are the shipped
sample events (a realistic mix of types, ~300-500 bytes each) and a mix of
invalid ones (mostly schema violations, the costly kind: the whole event is
parsed before the verdict). A reference line shows the two-step path
(`orjson.loads` then `validate_python`) for comparison.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Callable, Iterator

import orjson

from schemas import REGISTRY, InvalidEvent, validate
from schemas.samples import invalid_samples, sample_bytes, sample_event


@contextlib.contextmanager
def _one_core() -> Iterator[str]:
    """Pin to one CPU for the measurement; restore (other benches follow)."""
    if not hasattr(os, "sched_setaffinity"):
        yield "not pinned"
        return
    before = os.sched_getaffinity(0)
    cpu = min(before)
    os.sched_setaffinity(0, {cpu})
    try:
        yield f"pinned to CPU {cpu}"
    finally:
        os.sched_setaffinity(0, before)


def _rate(fn: Callable[[bytes], object], inputs: list[bytes], rounds: int, repeat: int) -> float:
    """Best of `repeat` timings of `rounds` passes over `inputs`, in items/s."""
    best = 0.0
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(rounds):
            for raw in inputs:
                fn(raw)
        best = max(best, rounds * len(inputs) / (time.perf_counter() - started))
    return best


def _valid(raw: bytes) -> object:
    return validate(raw)


def _invalid(raw: bytes) -> object:
    try:
        return validate(raw)
    except InvalidEvent as exc:
        return exc.reason


def _two_step(raw: bytes) -> object:
    # strict=False: strict Python mode would refuse the datetime strings.
    return REGISTRY.adapter.validate_python(orjson.loads(raw), strict=False)


def _invalid_inputs(rng: random.Random, count: int) -> list[bytes]:
    out = [raw for _, raw in invalid_samples()]
    while len(out) < count:
        doc = sample_event(type="order.created", rng=rng)
        doc["data"]["items"][0]["quantity"] = 0  # a violation deep in the event
        out.append(orjson.dumps(doc))
    return out


def main(count: int = 10_000, rounds: int = 10, repeat: int = 5) -> None:
    with _one_core() as pinned:
        _run(pinned, count, rounds, repeat)


def _run(pinned: str, count: int, rounds: int, repeat: int) -> None:
    rng = random.Random(42)
    valid = [sample_bytes(i, rng=rng)[1] for i in range(count)]
    invalid = _invalid_inputs(rng, count)
    for raw in valid:  # the benchmark must measure what it claims to
        validate(raw)
    size = sum(map(len, valid)) / len(valid)
    print(f"validate from bytes, one core ({pinned}), {count:,} inputs x {rounds} rounds, "
          f"best of {repeat}; mean valid event {size:.0f} B")
    valid_rate = _rate(_valid, valid, rounds, repeat)
    print(f"  valid:    {valid_rate:>11,.0f} events/s  ({valid_rate * size / 2**20:,.0f} MiB/s)"
          f"  goal >= 200,000: {'met' if valid_rate >= 200_000 else 'NOT met'}")
    print(f"  invalid:  {_rate(_invalid, invalid, rounds, repeat):>11,.0f} events/s")
    print(f"  reference, orjson.loads + validate_python: "
          f"{_rate(_two_step, valid, rounds, repeat):>11,.0f} events/s")


if __name__ == "__main__":
    main()
