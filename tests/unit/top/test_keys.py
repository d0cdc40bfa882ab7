"""Keys on a real pseudo-terminal: cbreak mode while inside, the previous
settings back after, also when the body raises; `q` sets the quit event."""

from __future__ import annotations

import asyncio
import io
import os
import termios
from collections.abc import Iterator

import pytest

from consumer.top.keys import cbreak, quit_on_key


@pytest.fixture
def terminal() -> Iterator[tuple[int, io.TextIOWrapper]]:
    """(the master side, the slave side as a text stream, as stdin would be)."""
    master, slave = os.openpty()
    stream = open(slave, encoding="utf-8")  # noqa: SIM115 - closed below
    try:
        yield master, stream
    finally:
        stream.close()
        os.close(master)


def lflag(fd: int) -> int:
    return int(termios.tcgetattr(fd)[3])


def test_cbreak_inside_and_restored_after_an_exception(
        terminal: tuple[int, io.TextIOWrapper]) -> None:
    _, stream = terminal
    fd = stream.fileno()
    before = termios.tcgetattr(fd)
    assert lflag(fd) & termios.ICANON
    inside: list[int] = []

    def watch() -> None:
        with cbreak(stream) as got:
            assert got == fd
            inside.append(lflag(fd))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        watch()
    assert not inside[0] & (termios.ICANON | termios.ECHO)
    assert inside[0] & termios.ISIG  # Ctrl-C still interrupts
    assert termios.tcgetattr(fd) == before


def test_no_terminal_no_keys() -> None:
    with cbreak(io.StringIO()) as fd:  # no descriptor at all
        assert fd is None
    read, write = os.pipe()
    try:
        with open(read, encoding="utf-8", closefd=False) as piped, cbreak(piped) as fd:
            assert fd is None
    finally:
        os.close(read)
        os.close(write)


async def test_q_sets_the_quit_event_and_other_keys_do_not(
        terminal: tuple[int, io.TextIOWrapper]) -> None:
    master, stream = terminal
    quit_event = asyncio.Event()
    with cbreak(stream) as fd, quit_on_key(fd, quit_event):
        os.write(master, b"x ")
        await asyncio.sleep(0.1)
        assert not quit_event.is_set()
        os.write(master, b"q")  # one key, no Enter: cbreak delivers it at once
        await asyncio.wait_for(quit_event.wait(), 2)
