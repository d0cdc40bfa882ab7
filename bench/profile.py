"""Profile `consumer run` (PostgreSQL sink) through a backlog with
pyinstrument, and print the top of the call tree.

    python -m bench.profile [--events 200000] [--src DIR]

`--src` runs another checkout of the code (e.g. `git archive main | tar -x
-C DIR`) with this environment: the before/after comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from bench.pipeline import _database, produce
from devtools.kafka import LocalKafka
from devtools.ports import free_port, project_root
from devtools.postgres import LocalPostgres

_MESSAGES = re.compile(r"^consumer_messages_total\{[^}]*\} ([0-9.e+]+)$", re.MULTILINE)


def _done(port: int) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return sum(float(v) for v in _MESSAGES.findall(resp.read().decode()))
    except OSError:
        return 0.0


def profile(bootstrap: str, dsn: str, events: int, src: Path, out: Path) -> None:
    topic = f"bench-profile-{uuid.uuid4().hex[:6]}"
    produce(bootstrap, topic, events)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSUMER_")}
    env.update({"PYTHONPATH": str(src), "CONSUMER_BOOTSTRAP_SERVERS": bootstrap,
                "CONSUMER_TOPICS": topic, "CONSUMER_GROUP_ID": f"profile-{uuid.uuid4().hex[:6]}",
                "CONSUMER_SINK_URL": dsn, "CONSUMER_HTTP_PORT": str(port),
                "CONSUMER_HTTP_HOST": "127.0.0.1", "CONSUMER_LOG_LEVEL": "WARNING"})
    argv = [sys.executable, "-m", "pyinstrument", "-r", "session", "-o", str(out),
            "-m", "consumer.cli", "run"]
    proc = subprocess.Popen(argv, env=env, cwd=src)
    try:
        deadline = time.monotonic() + 900
        while _done(port) < events and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(120)


def render(session: Path, *options: str, lines: int = 45) -> str:
    """A text rendering of a saved session, its first `lines` lines."""
    out = subprocess.run([sys.executable, "-m", "pyinstrument", "--load", str(session),
                          "-r", "text", "--unicode", *options],
                         capture_output=True, text=True, check=True).stdout
    return "\n".join(out.splitlines()[:lines])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.profile")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--src", type=Path, default=project_root())
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    broker, pg = LocalKafka(heap="1g"), LocalPostgres()
    bootstrap = broker.start()
    try:
        dsn = asyncio.run(_database(pg.start(), f"profile_{uuid.uuid4().hex[:6]}"))
        out = args.out or Path(tempfile.mkdtemp()) / "profile.pyisession"
        profile(bootstrap, dsn, args.events, args.src.resolve(), out)
    finally:
        pg.stop()
        broker.stop()
    print(f"# pyinstrument, `consumer run` from {args.src}, {args.events:,} events, "
          f"PostgreSQL sink; session: {out} (`pyinstrument --load {out}`)")
    print("## functions by own time")
    print(render(out, "-p", "flat", "-p", "flat_time=self", lines=30))
    print("## call tree")
    print(render(out, "-p", "processor_options.filter_threshold=0.02", lines=70))


if __name__ == "__main__":
    main()
