"""Carries out a fault schedule against the running group.

One task per fault, started at its time; each records an `Outcome`: when it
began, when its target was whole again (restarted, resumed, restored), and
the exit codes it caused. Blocking harness calls (broker and database
restarts) run in threads so the run's loop keeps measuring.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from dataclasses import dataclass, field

from chaos.downstream import Downstream
from chaos.schedule import MEMBER_KINDS, Fault, Kind
from chaos.supervisor import Supervisor
from devtools.kafka import LocalKafka
from devtools.postgres import LocalPostgres

JOINER = "m4"


@dataclass(slots=True)
class Outcome:
    fault: Fault
    started: float | None = None  # seconds since the run began
    ended: float | None = None  # target whole again
    codes: list[int | None] = field(default_factory=list)
    note: str = ""

    @property
    def member(self) -> str | None:
        """The member this fault hits, if any."""
        if self.fault.kind is Kind.JOIN:
            return JOINER
        return self.fault.target if self.fault.kind in MEMBER_KINDS else None

    @property
    def index(self) -> str:
        return f"{self.fault.kind.value}@{self.fault.at:.0f}s"


class Injector:
    def __init__(self, supervisor: Supervisor, *, kafka: LocalKafka, postgres: LocalPostgres,
                 downstream: Downstream, clock: Callable[[], float],
                 shutdown_timeout: float) -> None:
        self._sup = supervisor
        self._kafka = kafka
        self._pg = postgres
        self._downstream = downstream
        self._clock = clock
        self._term_timeout = shutdown_timeout + 15.0

    async def run(self, faults: list[Fault]) -> list[Outcome]:
        """Every fault at its time; returns when all have finished."""
        outcomes = [Outcome(f) for f in faults]
        tasks = []
        for outcome in outcomes:
            wait = outcome.fault.at - self._clock()
            if wait > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(self._one(outcome)))
        await asyncio.gather(*tasks)
        return outcomes

    async def _one(self, out: Outcome) -> None:
        fault = out.fault
        # A member still coming back from an earlier fault, or an earlier
        # joiner still draining: wait for it (bounded).
        if fault.kind in MEMBER_KINDS:
            ready = await _within(60.0, lambda: self._sup.up(fault.target))
        elif fault.kind is Kind.JOIN:
            ready = await _within(60.0, lambda: not self._sup.running(JOINER))
        else:
            ready = True
        if not ready:
            out.note = "skipped: target not ready"
            return
        out.started = self._clock()
        cause = f"{fault.kind.value}@{fault.at:.0f}s"
        match fault.kind:
            case Kind.SIGKILL | Kind.SIGTERM:
                sig = signal.SIGKILL if fault.kind is Kind.SIGKILL else signal.SIGTERM
                timeout = 10.0 if sig is signal.SIGKILL else self._term_timeout
                out.codes.append(await self._sup.signal_exit(fault.target, sig, cause, timeout))
                await asyncio.sleep(fault.hold)
                self._sup.start(fault.target)
            case Kind.SIGSTOP:
                self._sup.pause(fault.target)
                await asyncio.sleep(fault.hold)
                self._sup.resume(fault.target)
            case Kind.JOIN:
                self._sup.start(JOINER)
                await asyncio.sleep(fault.hold)
                out.codes.append(await self._sup.signal_exit(JOINER, signal.SIGTERM, cause,
                                                             self._term_timeout))
            case Kind.BROKER:
                await asyncio.to_thread(self._kafka.kill)
                await asyncio.to_thread(self._kafka.start)
            case Kind.POSTGRES:
                await asyncio.to_thread(self._pg.stop_server)
                await asyncio.sleep(fault.hold)
                await asyncio.to_thread(self._pg.start_server)
            case Kind.HTTP_429 | Kind.HTTP_500:
                status = 429 if fault.kind is Kind.HTTP_429 else 500
                await asyncio.to_thread(self._downstream.fault, status, fault.hold)
                await asyncio.sleep(fault.hold)
        out.ended = self._clock()


async def _within(seconds: float, check: Callable[[], bool]) -> bool:
    """Poll `check` until true or `seconds` passed."""
    for _ in range(int(seconds * 10)):
        if check():
            return True
        await asyncio.sleep(0.1)
    return check()
