"""Keypresses for `consumer top` on a plain terminal (SSH included): stdin in
cbreak mode — keys arrive one at a time, unechoed, Ctrl-C still a signal —
restored on the way out, whatever the way out is."""

from __future__ import annotations

import asyncio
import contextlib
import os
import termios
import tty
from collections.abc import Iterator
from typing import TextIO

QUIT_KEYS = frozenset(b"qQ")


@contextlib.contextmanager
def cbreak(stream: TextIO) -> Iterator[int | None]:
    """Yield the descriptor of `stream` in cbreak mode, or None when it is no
    terminal (piped, or under a test runner): then no keys are read. The
    previous terminal settings come back on exit, also on an exception."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError):  # a replaced stdin without a descriptor
        yield None
        return
    if not os.isatty(fd):
        yield None
        return
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)
    try:
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextlib.contextmanager
def quit_on_key(fd: int | None, quit_event: asyncio.Event) -> Iterator[None]:
    """While inside, a `q` read from `fd` sets `quit_event`. Call in the
    running loop."""
    if fd is None:
        yield
        return
    loop = asyncio.get_running_loop()

    def on_input() -> None:
        data = os.read(fd, 64)
        if not data:  # end of input: nothing more will come
            loop.remove_reader(fd)
        if QUIT_KEYS.intersection(data):
            quit_event.set()

    loop.add_reader(fd, on_input)
    try:
        yield
    finally:
        loop.remove_reader(fd)
