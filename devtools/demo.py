"""`make run`: the whole service on embedded defaults, with traffic.

Starts (or reuses) a local broker on 127.0.0.1:9092 unless
CONSUMER_BOOTSTRAP_SERVERS is set, creates the topic (6 partitions) and its
dead-letter topic, runs a demo producer (~20 events/s, a few invalid ones
mixed in) and `consumer run` with the SQLite sink, and prints where to look.
On a terminal it then shows `consumer top` against the service in the
foreground, the service's logs going to a file whose path it prints; with
stdout not a terminal (CI, a pipe) the logs go to stdout instead. Ctrl-C —
or `q` in the live view — stops the producer, lets the service drain and
exit, then stops the broker if this command started it.

The broker and the service run in their own sessions so the terminal's Ctrl-C
reaches only this process and the live view, which then stop them in order
(the view first, giving the terminal back; the producer; the service: it
needs the broker to commit while it drains; the broker).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from consumer.config import Settings, load_settings
from consumer.errors import ConfigError
from consumer.masking import mask_url
from consumer.observability.tracing import start_tracing
from consumer.security import KafkaSecurity, kafka_security
from devtools import kafka as local
from devtools.ports import port_open

if TYPE_CHECKING:
    from consumer.observability.otel import Tracing

DEMO_PORT = 9092
DEMO_PARTITIONS = 6
DEMO_RATE = 20.0  # events per second: modest, readable in the logs
INVALID_EVERY = 25  # one invalid event in 25
#: The service's log while the live view has the terminal (beside the database).
LOG_FILE = "consumer-demo.log"


def _say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def _bootstrap(env: dict[str, str]) -> tuple[str, local.LocalKafka | None]:
    """The broker to use and the one we started (None when reused)."""
    if given := env.get("CONSUMER_BOOTSTRAP_SERVERS"):
        return given, None
    if reused := local.running_bootstrap():
        return reused, None
    address = f"127.0.0.1:{DEMO_PORT}"
    if port_open(DEMO_PORT):
        if local.metadata_round_trip(address, timeout=5.0):
            _say(f"reusing the Kafka broker already answering on {address}")
            return address, None
        raise RuntimeError(
            f"port {DEMO_PORT} is busy and no Kafka broker answers there; free it or set "
            "CONSUMER_BOOTSTRAP_SERVERS to a broker's address")
    _say("starting a local Kafka broker (KRaft, Maven jars; first run downloads them) ...")
    broker = local.LocalKafka(port=DEMO_PORT)
    # Own session: the terminal's Ctrl-C must not kill the broker under the drain.
    return broker.start(detach=True), broker


def run_demo() -> int:
    """Blocking entry point of `python -m devtools demo`; returns the exit code."""
    env = dict(os.environ)
    env.setdefault("CONSUMER_SINK_URL", "sqlite:///./consumer.db")
    # A person watches this one: human-readable logs unless asked otherwise.
    env.setdefault("CONSUMER_LOG_FORMAT", "console")
    try:
        bootstrap, started = _bootstrap(env)
    except (RuntimeError, TimeoutError) as exc:
        _say(f"cannot start: {exc}")
        return 1
    env["CONSUMER_BOOTSTRAP_SERVERS"] = bootstrap
    try:
        settings = load_settings(None, bootstrap_servers=bootstrap,
                                 sink_url=env["CONSUMER_SINK_URL"])
        return asyncio.run(_demo(settings, env))
    except ConfigError as exc:
        _say(str(exc))
        return 2
    finally:
        if started is not None:
            _say("stopping the local Kafka broker")
            started.stop()


def _live_view() -> bool:
    """Show `consumer top` in the foreground: only on a terminal."""
    return sys.stdout.isatty() and sys.stdin.isatty()


async def _demo(settings: Settings, env: dict[str, str]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    topic, dlq = settings.topics[0], settings.dead_letter_topic
    # A secured CONSUMER_BOOTSTRAP_SERVERS works too: the same security as the service.
    security = kafka_security(settings)
    await local.create_topics(settings.bootstrap_servers,
                              {topic: DEMO_PARTITIONS, dlq: DEMO_PARTITIONS}, security=security)
    log_file = _log_path(settings.sink_url) if _live_view() else None
    with contextlib.ExitStack() as files:
        logs = None if log_file is None else files.enter_context(log_file.open("wb"))
        service = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "consumer.cli", "run", env=env, start_new_session=True,
            stdout=logs, stderr=None if logs is None else asyncio.subprocess.STDOUT)
    # With CONSUMER_TRACING=otlp the demo's events carry a traceparent too.
    tracing = start_tracing(settings.tracing)
    # The producer stops on its own event, set once the live view gave the
    # terminal back: its last words must not land on the view's screen.
    halt = asyncio.Event()
    producer = asyncio.create_task(_produce(settings.bootstrap_servers, security, topic, halt,
                                            tracing), name="demo-producer")
    _where_to_look(settings, topic, dlq, log_file)
    exited = asyncio.create_task(service.wait())
    stopping = asyncio.create_task(stop.wait())
    waits: set[asyncio.Future[Any]] = {exited, stopping, producer}
    view = None
    if log_file is not None:
        # Same process group as this one: the terminal's Ctrl-C reaches both.
        view = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "consumer.cli", "top", f"127.0.0.1:{settings.http_port}",
            env=env)
        waits.add(asyncio.ensure_future(view.wait()))
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    if view is not None:
        await _close_view(view)
    halt.set()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(producer, 10)
    if service.returncode is None:
        _say("stopping: the service drains, commits and exits ...")
        service.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(asyncio.shield(exited), settings.shutdown_timeout + 15)
        except TimeoutError:
            _say("the service did not exit in time; killing it")
            service.kill()
    code = await exited
    stopping.cancel()
    _say(f"service exited with {code}; {_stored(settings.sink_url)}")
    if log_file is not None:
        _say(f"its logs: {log_file}")
    return code


async def _close_view(view: asyncio.subprocess.Process) -> None:
    """Quit the live view (it quits by itself on `q` or Ctrl-C) and wait for
    it: it gives the terminal back as it found it."""
    if view.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            view.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(view.wait(), 10)
    except TimeoutError:
        view.kill()
        await view.wait()


def _log_path(sink_url: str) -> Path:
    """Where the service logs while the live view has the terminal: beside
    the SQLite database, else in the current directory."""
    db = _sqlite_file(sink_url)
    return (db.parent if db is not None else Path.cwd()).resolve() / LOG_FILE


async def _produce(bootstrap: str, security: KafkaSecurity, topic: str,
                   stop: asyncio.Event, tracing: Tracing | None = None) -> None:
    """Samples at DEMO_RATE until `stop`; every INVALID_EVERY-th one invalid."""
    from aiokafka import AIOKafkaProducer

    from schemas.samples import invalid_samples, sample_bytes

    invalid = itertools.cycle(list(invalid_samples()))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, **security.options())
    await producer.start()
    sent = bad = 0
    try:
        for i in itertools.count():
            if stop.is_set():
                break
            if i % INVALID_EVERY == INVALID_EVERY - 1:
                _, value = next(invalid)
                key: bytes | None = b"invalid"
                bad += 1
            else:
                key, value = sample_bytes(i)
            if tracing is None:
                await producer.send(topic, value, key=key)
            else:
                from consumer.observability.otel import send_span

                headers, sent_span = send_span(tracing, topic)
                (await producer.send(topic, value, key=key, headers=headers)).add_done_callback(
                    sent_span)
            sent += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0 / DEMO_RATE)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.stop(), 10)
        if tracing is not None:
            await asyncio.to_thread(tracing.shutdown)
        _say(f"producer stopped: {sent} events sent, {bad} of them invalid")


def _where_to_look(settings: Settings, topic: str, dlq: str, log_file: Path | None) -> None:
    port = settings.http_port
    db = _sqlite_file(settings.sink_url)
    lines = [
        f"broker      {settings.bootstrap_servers}  topic {topic} ({DEMO_PARTITIONS} "
        f"partitions), dead letters in {dlq}",
        f"producer    ~{DEMO_RATE:.0f} events/s, one in {INVALID_EVERY} invalid",
        f"metrics     http://127.0.0.1:{port}/metrics   (health: /healthz, /readyz)",
    ]
    if db is not None:
        lines.append(f"database    {db}   e.g. sqlite3 {db} "
                     "'select type, count(*) from events group by type'")
    else:
        lines.append(f"sink        {mask_url(settings.sink_url)}")
    lines.append(f"dead letters  CONSUMER_BOOTSTRAP_SERVERS={settings.bootstrap_servers} "
                 "consumer dlq inspect")
    if log_file is not None:
        lines += [f"logs        {log_file}   (tail -f it in another terminal)",
                  f"live view   consumer top 127.0.0.1:{port}   (q or Ctrl-C stops the demo)"]
    lines.append("Ctrl-C      stops the producer, drains the service, stops what was started")
    for line in lines:
        _say(line)


def _sqlite_file(url: str) -> Path | None:
    if not url.startswith("sqlite:///"):
        return None
    return Path(url.removeprefix("sqlite:///")).resolve()


def _stored(url: str) -> str:
    db = _sqlite_file(url)
    if db is None or not db.exists():
        return f"rows went to {mask_url(url)}"
    try:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            (count,) = conn.execute("SELECT count(*) FROM events").fetchone()
    except sqlite3.Error as exc:
        return f"could not count rows in {db}: {exc}"
    return f"{count} rows in {db}"
