"""Helpers for the engine tests: the handled-records file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Handled:
    partition: int
    offset: int
    key: str
    at_ns: int


def read_handled(path: Path) -> list[Handled]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 4:
            out.append(Handled(int(parts[0]), int(parts[1]), parts[2], int(parts[3])))
    return out
