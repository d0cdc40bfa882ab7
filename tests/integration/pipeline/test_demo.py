"""`make run`'s demo (`python -m devtools demo`) against the session broker: traffic
flows into the SQLite file, invalid events into the dead-letter topic, and
SIGINT (Ctrl-C) stops everything with exit code 0."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from contextlib import closing
from pathlib import Path

import pytest

from devtools.harness import read_topic
from devtools.ports import free_port, project_root

pytestmark = pytest.mark.integration


def drive_demo(env: dict[str, str], cwd: Path) -> tuple[int, str, int]:
    """Run the demo until 100 rows are stored (or 90 s), then Ctrl-C it.
    Returns (exit code, its output, rows stored)."""
    db = cwd / "consumer.db"
    log = cwd / "demo.log"

    def rows() -> int:
        if not db.exists():
            return 0
        with closing(sqlite3.connect(db, timeout=5)) as conn:
            try:
                return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
            except sqlite3.OperationalError:
                return 0

    # devtools is the checkout's, not installed: the demo runs in `cwd`.
    env = {**env, "PYTHONPATH": os.pathsep.join(
        p for p in (str(project_root()), env.get("PYTHONPATH")) if p)}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "devtools", "demo"],
                                env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while rows() < 100 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(1)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode, log.read_text(errors="replace"), rows()


async def test_demo_stores_dead_letters_and_stops_cleanly_on_ctrl_c(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    topic = f"demo-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSUMER_")}
    env.update({"CONSUMER_BOOTSTRAP_SERVERS": kafka_bootstrap, "CONSUMER_TOPICS": topic,
                "CONSUMER_GROUP_ID": topic, "CONSUMER_HTTP_PORT": str(free_port())})
    code, text, stored = await asyncio.to_thread(drive_demo, env, tmp_path)
    assert code == 0, text[-3000:]
    assert stored >= 100, text[-3000:]
    db = (tmp_path / "consumer.db").resolve()
    for expected in ("/metrics", str(db), "consumer dlq inspect",
                     "producer stopped", "service exited with 0"):
        assert expected in text, f"{expected!r} missing from:\n{text[-3000:]}"
    dead = await read_topic(kafka_bootstrap, f"{topic}.dlq", idle=1.0)
    assert dead, "the invalid events did not reach the dead-letter topic"
