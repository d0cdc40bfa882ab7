"""`consumer top` against the real service on the real broker: `--once`
prints rates, partitions and an unreachable instance; the live view in a
real terminal (tmux) quits on `q`, gives the terminal back as it was, and
draws no colour under NO_COLOR."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from devtools.harness import (
    Service,
    committed_all,
    create_topics,
    produce,
    terminate_all,
    wait_until,
)
from devtools.ports import free_port, project_root
from devtools.postgres import LocalPostgres
from schemas.samples import sample_event
from tests.ansi import coloured

pytestmark = pytest.mark.integration


def top_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "consumer.cli", "top", *args]


async def running_service(bootstrap: str, partitions: int = 2) -> tuple[Service, str, str]:
    """A service consuming a fresh topic, once it reads as caught up; its
    host:port and topic."""
    topic, dlq = await create_topics(bootstrap, partitions=partitions)
    svc = Service(bootstrap_servers=bootstrap, topics=topic, dlq_topic=dlq,
                  group_id=f"g-{uuid.uuid4().hex[:8]}", sink_url="none",
                  commit_interval="0.2").start()
    address = f"127.0.0.1:{svc.env['CONSUMER_HTTP_PORT']}"
    await produce(bootstrap, topic, 50)

    def listed() -> bool:  # assigned, and per-partition series for every partition
        return f'consumer_lag{{partition="{partitions - 1}"' in svc.metrics()

    await wait_until(listed, 60, "the service to report its partitions", svc)
    return svc, address, topic


async def top_once(*args: str) -> tuple[int | None, str, str]:
    """`consumer top --once ARGS`: exit code, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        *top_command("--once", *args), cwd=project_root(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode, out.decode(), err.decode()


def partition_rows(shown: str, address: str, topic: str) -> dict[int, tuple[str, ...]]:
    """partition -> (lag, time lag, committed, paused, in flight, last commit)."""
    rows = re.findall(rf"^\s*http://{re.escape(address)}\s+{topic}\s+(\d+)\s+(\S+)\s+"
                      r"(\S+ \S+|-)\s+(\d+|-)\s+(no|paused|-)\s+(\S+)\s+(.+?)\s*$",
                      shown, re.MULTILINE)
    return {int(row[0]): tuple(row[1:]) for row in rows}


async def test_once_shows_rates_partitions_and_an_unreachable_instance(
        kafka_bootstrap: str) -> None:
    svc, address, topic = await running_service(kafka_bootstrap)
    closed = f"127.0.0.1:{free_port()}"
    group = svc.env["CONSUMER_GROUP_ID"]
    try:
        traffic = asyncio.create_task(produce(kafka_bootstrap, topic, 400, start=50, rate=100))
        code, shown, err = await top_once("--interval", "2", address, closed)
        await traffic
        assert code == 1, (shown, err)  # one instance did not answer
        assert "\x1b[" not in shown  # plain text
        row = next(line for line in shown.splitlines()
                   if line.strip().startswith(f"http://{address}"))
        _, state, done, *_ = row.split()
        assert state == "ready", row
        assert float(done.removesuffix("k")) > 0, row  # ~100 msg/s were flowing
        assert f"http://{closed}: unreachable" in shown

        # Every record produced (50 + 400) committed, as the broker says:
        # then top's numbers are exact.
        await wait_until(lambda: committed_all(kafka_bootstrap, group, topic), 60,
                         "the group to commit every record", svc)
        code, shown, err = await top_once("--interval", "1", address)
        assert code == 0, (shown, err)
        rows = partition_rows(shown, address, topic)
        assert set(rows) == {0, 1}, shown
        assert sum(int(r[2]) for r in rows.values()) == 450, shown  # committed offsets
        for lag, time_lag, _, paused, in_flight, last_commit in rows.values():
            assert (lag, time_lag, paused, in_flight) == ("0", "0 s", "no", "0"), shown
            assert last_commit.endswith(" ago"), shown
        assert (f"http://{address} since start: ok 450, dead-lettered 0, invalid 0, "
                "fetched 450") in shown, shown
    finally:
        codes = terminate_all(svc)
    assert codes == [0], svc.log_tail()


async def test_once_during_a_drain_says_draining(kafka_bootstrap: str) -> None:
    """SIGTERM with a stuck message in flight: until the drain deadline /readyz
    says `draining`, and top shows it, with the message still in flight."""
    topic, dlq = await create_topics(kafka_bootstrap, partitions=1)
    svc = Service(bootstrap_servers=kafka_bootstrap, topics=topic, dlq_topic=dlq,
                  group_id=f"g-{uuid.uuid4().hex[:8]}", sink_url="none",
                  handler="tests.integration.observability.handlers:block",
                  shutdown_timeout="60", commit_interval="0.2").start()
    address = f"127.0.0.1:{svc.env['CONSUMER_HTTP_PORT']}"
    try:
        event = sample_event(0)
        event["id"] = f"block-{uuid.uuid4().hex}"  # the handler never finishes it
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topic, orjson.dumps(event))
        finally:
            await producer.stop()

        def stuck() -> bool:
            return "consumer_in_flight_messages 1.0" in svc.metrics()

        await wait_until(stuck, 60, "the blocked message in flight", svc)
        assert svc.proc is not None
        svc.proc.send_signal(signal.SIGTERM)
        code, shown, err = await top_once("--interval", "0.5", address)
        assert code == 0, (shown, err)
        assert re.search(rf"http://{re.escape(address)}\s+draining\s", shown), shown
        assert (f"http://{address} /readyz: HTTP 503 draining: stopping, 1 message(s) in "
                "flight to finish before the last commit") in shown, shown
        assert partition_rows(shown, address, topic)[0][4] == "1", shown  # in flight
    finally:
        if svc.alive:
            svc.kill()  # the stuck handler never returns: no clean stop to wait for


class Tmux:
    """A tmux server of the test's own (its own socket), one window."""

    def __init__(self) -> None:
        self.socket = f"consumer-top-{uuid.uuid4().hex[:8]}"

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True,
                              capture_output=True, text=True, timeout=10).stdout

    def start(self) -> None:
        self("new-session", "-d", "-x", "200", "-y", "40", "-c", str(project_root()),
             "bash --norc --noprofile")

    def type(self, line: str) -> None:
        self("send-keys", "-l", line)
        self("send-keys", "Enter")

    def screen(self, *, escapes: bool = False) -> str:
        return self("capture-pane", "-p", *(["-e"] if escapes else []))

    def stop(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], check=False,
                       capture_output=True, timeout=10)


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    term = Tmux()
    term.start()
    try:
        yield term
    finally:
        term.stop()


async def test_live_view_in_a_terminal_quits_on_q_and_restores_it(
        kafka_bootstrap: str, tmux: Tmux) -> None:
    svc, address, topic = await running_service(kafka_bootstrap, partitions=3)
    command = shlex.join(top_command("--interval", "0.5", address))
    try:
        for env, in_colour in (("", True), ("NO_COLOR=1 ", False)):
            marker = f"EXIT-{uuid.uuid4().hex[:6]}"
            tmux.type(f"clear; {env}{command}; echo {marker}=$?")

            def drawn() -> bool:
                return bool(re.search(rf"http://{re.escape(address)}\s+ready\s+\d",
                                      tmux.screen()))

            await wait_until(drawn, 30, "the live view to show the instance with rates", svc,
                             detail=tmux.screen)
            for partition in range(3):  # every assigned partition has its row
                assert re.search(rf"http://{re.escape(address)}\s+{topic}\s+{partition}\s",
                                 tmux.screen()), tmux.screen()
            painted = tmux.screen(escapes=True)
            assert coloured(painted) is in_colour, (env, painted)
            tmux("send-keys", "q")  # one key, no Enter

            def exited(marker: str = marker) -> bool:
                return f"{marker}=0" in tmux.screen()

            await wait_until(exited, 10, "top to quit on q with status 0", detail=tmux.screen)
            tmux.type("stty -a")
            await wait_until(lambda: "icanon" in tmux.screen(), 10, "stty's answer",
                             detail=tmux.screen)
            settings = tmux.screen().split()
            for flag in ("icanon", "echo", "isig"):  # cooked mode again, as before
                assert flag in settings, tmux.screen()
                assert f"-{flag}" not in settings, tmux.screen()
    finally:
        codes = terminate_all(svc)
    assert codes == [0], svc.log_tail()


def marked_processes(mark: str) -> list[int]:
    """Pids of live processes whose environment carries `mark`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if mark.encode() in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize("quit_key", ["q", "C-c"])
async def test_the_demo_shows_the_live_view_and_stops_everything_on_quit(
        kafka_bootstrap: str, tmux: Tmux, tmp_path: Path, quit_key: str) -> None:
    """`make run` on a terminal: the live view of the demo's service with its
    six partitions, the logs in the file it names; `q` or Ctrl-C drains and
    stops the producer and the service and exits 0, nothing left running."""
    topic = f"demo-{uuid.uuid4().hex[:8]}"
    port = free_port()
    mark = f"CONSUMER_DEMO_TEST={uuid.uuid4().hex}"
    env = {"CONSUMER_BOOTSTRAP_SERVERS": kafka_bootstrap, "CONSUMER_TOPICS": topic,
           "CONSUMER_GROUP_ID": topic, "CONSUMER_HTTP_PORT": str(port),
           "CONSUMER_HTTP_HOST": "127.0.0.1"}
    # devtools is the checkout's, not installed: the demo runs in tmp_path.
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(project_root()), os.environ.get("PYTHONPATH")) if p)
    command = shlex.join(["env", mark, *(f"{k}={v}" for k, v in env.items()),
                          sys.executable, "-m", "devtools", "demo"])
    marker = f"EXIT-{uuid.uuid4().hex[:6]}"
    tmux.type(f"cd {shlex.quote(str(tmp_path))}; clear; {command}; echo {marker}=$?")
    try:
        def every_partition() -> bool:
            screen = tmux.screen()
            return (bool(re.search(rf"http://127\.0\.0\.1:{port}\s+ready\s+\d", screen))
                    and all(re.search(rf"http://127\.0\.0\.1:{port}\s+{topic}\s+{p}\s", screen)
                            for p in range(6)))

        await wait_until(every_partition, 90, "the demo's live view with its 6 partitions",
                         detail=tmux.screen)
        tmux("send-keys", quit_key)

        def exited() -> bool:
            return f"{marker}=" in tmux.screen()

        await wait_until(exited, 90, "the demo to stop", detail=tmux.screen)
        shown = tmux.screen()
        assert f"{marker}=0" in shown, shown
        for said in ("producer stopped", "service exited with 0"):
            assert said in shown, shown
        log = tmp_path / "consumer-demo.log"
        assert str(log) in shown, shown
        assert "partitions assigned" in log.read_text(errors="replace")  # the service's logs
        assert marked_processes(mark) == [], "the demo left processes running"
    finally:
        for pid in marked_processes(mark):  # stop what a failure left, by pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)



async def test_once_while_the_sink_is_down(kafka_bootstrap: str,
                                           own_postgres: LocalPostgres) -> None:
    """What an operator sees with the database gone: not ready because the
    sink cannot write, sink errors, nothing committed, lag growing; the
    service rides it out and stops cleanly once the database is back."""
    topic, dlq = await create_topics(kafka_bootstrap, partitions=3)
    svc = Service(bootstrap_servers=kafka_bootstrap, topics=topic, dlq_topic=dlq,
                  group_id=f"g-{uuid.uuid4().hex[:8]}", sink_url=own_postgres.dsn,
                  commit_interval="0.5").start()
    address = f"127.0.0.1:{svc.env['CONSUMER_HTTP_PORT']}"
    try:
        await produce(kafka_bootstrap, topic, 60, invalid_every=20)

        def listed() -> bool:
            return 'consumer_lag{partition="2"' in svc.metrics()

        await wait_until(listed, 60, "the service to report its partitions", svc)
        own_postgres.stop_server()
        traffic = asyncio.create_task(produce(kafka_bootstrap, topic, 200, start=60, rate=20,
                                              invalid_every=20))

        def sink_errors() -> bool:
            return re.search(r'^consumer_sink_errors_total\{retriable="true",sink="postgres"\} '
                             r"[1-9]", svc.metrics(), re.MULTILINE) is not None

        await wait_until(sink_errors, 60, "the sink's writes to fail", svc)
        code, shown, err = await top_once("--interval", "2", address)
        print(f"\n{shown}")  # the snapshot, for the record (pytest -s)
        await traffic
        assert code == 0, (shown, err)
        assert re.search(rf"http://{re.escape(address)}\s+not ready\s", shown), shown
        assert f"http://{address} /readyz: HTTP 503 sink postgres: cannot write" in shown, shown
        row = next(line for line in shown.splitlines()
                   if line.strip().startswith(f"http://{address}"))
        assert float(row.split()[-1].removesuffix("k")) > 0, row  # sink err/s
        rows = partition_rows(shown, address, topic)
        assert set(rows) == {0, 1, 2}, shown
        assert sum(int(r[0]) for r in rows.values()) > 0, shown  # lag while nothing lands
        assert sum(int(r[4]) for r in rows.values()) > 0, shown  # held in flight
        own_postgres.start_server()
    finally:
        codes = terminate_all(svc)
    assert codes == [0], svc.log_tail()
