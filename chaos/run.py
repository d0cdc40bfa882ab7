"""The chaos scenario, composed: infrastructure → group → traffic → faults →
drain → stop → accounting → verdict.

`main(argv)` is `make chaos` (and, shorter, the integration test): it starts
its own broker and PostgreSQL on 127.0.0.1, a downstream, `members` consumer
processes and a producer, carries out the seeded fault schedule while the
producer runs, then waits for the group to drain (bounded), stops every
member with SIGTERM and counts every event. Exit 0 only when nothing was
lost or doubled, the dead-letter topic holds exactly the invalid events and
every exit is explained by its fault. Every process it starts is stopped by
its pid on the way out, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import signal
import sys
import tempfile
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from chaos import counters
from chaos.accounting import account, gather_inputs
from chaos.downstream import Downstream
from chaos.faults import Injector
from chaos.lag import Clock, LagMonitor
from chaos.producer import Producer
from chaos.report import Verdict, blame, verdict
from chaos.schedule import Timing, plan
from chaos.supervisor import Member, Supervisor
from devtools.kafka import LocalKafka, create_topics
from devtools.postgres import LocalPostgres

#: Beyond production and the drain: start-up, a slipped schedule, the final
#: stop and the accounting.
LIMIT_SLACK = 420.0
TOPIC = "chaos"
GROUP = "chaos"


@dataclass(frozen=True, slots=True)
class Config:
    seed: int
    duration: float  # seconds of production
    rate: float  # records per second
    faults: int
    members: int = 3
    partitions: int = 12
    invalid_every: int = 100
    session_timeout: float = 10.0
    shutdown_timeout: float = 30.0
    drain_limit: float = 900.0  # after production stops (and the lag must keep falling)
    warmup: float = 15.0  # no fault before this
    workdir: Path | None = None
    delivery: str = "at_least_once"

    @property
    def timing(self) -> Timing:
        return Timing(session_timeout=self.session_timeout)

    @property
    def lag_threshold(self) -> int:
        """'Recovered' = lag back under three seconds of traffic."""
        return max(300, int(self.rate * 3))


def member_settings(cfg: Config, bootstrap: str, dsn: str) -> dict[str, str]:
    """What every member runs with; defaults where the issue says nothing.
    Retries outlast the injected downstream outages (a valid event must not
    be dead-lettered because a downstream was briefly away), and the limiter
    leaves room for the traffic."""
    heartbeat = min(3_000, int(cfg.session_timeout * 1000 / 3))
    return {
        "bootstrap_servers": bootstrap, "topics": TOPIC, "group_id": GROUP,
        "sink_url": dsn, "handler": "chaos.handler:handle", "ordering": "key",
        "log_level": "INFO", "http_host": "127.0.0.1",
        "session_timeout_ms": str(int(cfg.session_timeout * 1000)),
        "heartbeat_interval_ms": str(heartbeat),
        "shutdown_timeout": str(cfg.shutdown_timeout),
        "rate_limit": str(max(1_000.0, cfg.rate * 4)), "rate_burst": "500",
        "retry_max_attempts": "1000", "retry_deadline": "600", "retry_max_delay": "2",
        "sink_retry_max_delay": "2",
        "handler_timeout": "10",
        # The per-key counters (chaos.counters) in the write transaction, in
        # either mode: at-least-once shows what redeliveries cost them.
        "delivery": cfg.delivery, "sink_apply": "chaos.counters:apply",
    }


async def scenario(cfg: Config, *, kafka: LocalKafka, pg: LocalPostgres, downstream: Downstream,
                   supervisor: Supervisor, producer: Producer, clock: Clock,
                   workdir: Path) -> Verdict:
    names = [f"m{i + 1}" for i in range(cfg.members)]
    faults = plan(cfg.seed, count=cfg.faults, start=cfg.warmup,
                  end=max(cfg.warmup, cfg.duration - 15.0), members=names, timing=cfg.timing)
    # Traffic for the whole run: past the last fault's hold (a crowded
    # schedule slips a little past its window).
    duration = max([cfg.duration, *(f.at + f.hold + 15.0 for f in faults)])
    print(f"chaos: seed={cfg.seed} faults={len(faults)} rate={cfg.rate:.0f}/s "
          f"duration={duration:.0f}s workdir={workdir}", flush=True)
    for f in faults:
        print(f"  planned: {f.describe()}", flush=True)
    lag = LagMonitor(kafka.bootstrap, GROUP, TOPIC, cfg.partitions, clock)
    for name in names:
        supervisor.start(name)
    supervisor.start_watching()
    producer.start(duration)
    lag.start()
    injector = Injector(supervisor, kafka=kafka, postgres=pg, downstream=downstream,
                        clock=clock.now, shutdown_timeout=cfg.shutdown_timeout)
    try:
        outcomes = await injector.run(faults)
        summary = await producer.wait()
        print(f"chaos: production over at t={clock.now():.0f}s {summary}; draining", flush=True)
        drained = await lag.drained(cfg.drain_limit)
        print(f"chaos: {'drained' if drained else 'NOT drained'} at t={clock.now():.0f}s",
              flush=True)
    finally:
        await lag.close()
        with (workdir / "lag.csv").open("w") as out:
            out.writelines(f"{t:.1f},{'' if v is None else v}\n" for t, v in lag.samples)
    await supervisor.stop_all(cfg.shutdown_timeout + 15)
    ledgers = [workdir / f"{name}.ledger" for name in supervisor.members]
    produced, rows, dead, invocations, counters = await gather_inputs(
        kafka.bootstrap, TOPIC, f"{TOPIC}.dlq", pg.dsn, ledgers)
    accounts = account(produced, rows, dead, invocations, counters)
    print(f"chaos: producer {summary}; downstream answers {downstream.stats()}", flush=True)
    extra = [(clock.of_ns(r.previous_ns), r.previous_member, clock.of_ns(r.at_ns))
             for r in accounts.redeliveries_seen]
    with (workdir / "redone.csv").open("w") as out:  # for a closer look
        out.write("previous_at,previous_member,redelivered_at,fault\n")
        out.writelines(f"{p:.2f},{m},{a:.2f},{i + 1}\n"
                       for (p, m, a), i in zip(extra, blame(outcomes, extra), strict=True))
    return verdict(seed=cfg.seed, outcomes=outcomes, exits=supervisor.exits, lag=lag.samples,
                   threshold=cfg.lag_threshold, accounts=accounts, extra=extra,
                   drain=cfg.shutdown_timeout, drained=drained,
                   exactly_once=cfg.delivery == "exactly_once")


async def _bounded(seconds: float, run: Coroutine[Any, Any, Verdict]) -> Verdict:
    """The whole scenario within `seconds`: a hang anywhere fails the run."""
    async with asyncio.timeout(seconds):
        return await run


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def _infrastructure(workdir: Path) -> Iterator[tuple[LocalKafka, LocalPostgres, Downstream]]:
    with contextlib.ExitStack() as stack:
        kafka = LocalKafka(data_dir=workdir / "kafka")
        stack.callback(kafka.stop)
        pg = LocalPostgres()
        stack.callback(pg.stop)
        downstream = Downstream(workdir / "downstream.log")
        stack.callback(downstream.stop)
        kafka.start()
        pg.start()
        downstream.start()
        yield kafka, pg, downstream


def run(cfg: Config) -> int:
    workdir = cfg.workdir or Path(tempfile.mkdtemp(prefix="consumer-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    # The lag monitor polls through broker restarts: its clients' connection
    # errors are expected, not news.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    began = time.monotonic()
    try:
        with _infrastructure(workdir) as (kafka, pg, downstream):
            asyncio.run(create_topics(kafka.bootstrap, {TOPIC: cfg.partitions,
                                                        f"{TOPIC}.dlq": 3}))
            asyncio.run(counters.create(pg.dsn))
            clock = Clock()

            def make(name: str) -> Member:
                env = {"CHAOS_LEDGER": str(workdir / f"{name}.ledger"),
                       "CHAOS_DOWNSTREAM_URL": downstream.url}
                return Member(name, workdir / f"{name}.log",
                              member_settings(cfg, kafka.bootstrap, pg.dsn), env)

            supervisor = Supervisor(make, clock.now)
            producer = Producer(kafka.bootstrap, TOPIC, rate=cfg.rate,
                                invalid_every=cfg.invalid_every, seed=cfg.seed,
                                log=workdir / "producer.log")
            try:
                result = asyncio.run(_bounded(cfg.duration + cfg.drain_limit + LIMIT_SLACK,
                                              scenario(cfg, kafka=kafka, pg=pg,
                                                       downstream=downstream,
                                                       supervisor=supervisor, producer=producer,
                                                       clock=clock, workdir=workdir)))
            finally:
                producer.stop()
                supervisor.kill_all()
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(result.table)
    for problem in result.problems:
        print(f"FAIL: {problem}")
    print(f"chaos: took {time.monotonic() - began:.0f}s; logs and ledgers in {workdir}")
    print(result.line, flush=True)
    return 1 if result.problems else 0


def parse(argv: list[str]) -> Config:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=None, help="replay a run (default: random)")
    parser.add_argument("--duration", type=float, default=240.0, help="seconds of production")
    parser.add_argument("--rate", type=float, default=1_300.0, help="records per second")
    parser.add_argument("--faults", type=int, default=22)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--session-timeout", type=float, default=10.0, help="seconds")
    parser.add_argument("--drain-limit", type=float, default=900.0,
                        help="seconds after production; the lag must also keep falling")
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds without faults")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--delivery", choices=["at_least_once", "exactly_once"],
                        default="at_least_once", help="CONSUMER_DELIVERY of the members")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**6)
    return Config(seed=seed, duration=args.duration, rate=args.rate, faults=args.faults,
                  members=args.members, session_timeout=args.session_timeout,
                  drain_limit=args.drain_limit, warmup=args.warmup, workdir=args.workdir,
                  delivery=args.delivery)


def main(argv: list[str] | None = None) -> int:
    return run(parse(sys.argv[1:] if argv is None else argv))
