"""Supervises the group's `consumer run` processes, as an orchestrator would.

A member is the integration tests' `Service` (a `consumer run` subprocess)
with a name, its own log file and ledger. Faults go through `signal_exit`,
`pause` and `resume`, which say in advance which exit they cause; an exit
nobody asked for is recorded as unexplained and the member is restarted after
`restart_delay` — the run carries on and fails at the end. Every process is
stopped by its pid: `stop_all` drains them with SIGTERM, `kill_all` is the
cleanup path (SIGCONT, then SIGKILL) for failures and Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from devtools.harness import Service

CANNOT_RUN = "cannot run"
#: A SIGTERM that lands while the process is still starting (before it
#: installs its handlers) ends it with the default action: nothing was consumed.
EARLY = "(during start-up)"
#: SIGTERM whose drain outlived `CONSUMER_SHUTDOWN_TIMEOUT`: commit what is
#: done, exit 1 — the designed end of a drain that cannot finish in time.
DEADLINE = "(drain deadline)"


class Member(Service):
    def __init__(self, name: str, log: Path, settings: dict[str, str],
                 env: dict[str, str]) -> None:
        super().__init__(**settings, client_id=name)
        self.name = name
        self._log = log
        self.env.update(env)
        #: Set while a fault owns this member's next exit.
        self.faulted = False
        #: Set from a signal until its exit is recorded: the name is not free.
        self.exiting = False
        self._mark = 0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def code(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def start(self) -> Member:
        self._mark = self._log.stat().st_size if self._log.exists() else 0
        super().start()
        return self

    def consuming(self) -> bool:
        """This run got as far as consuming (its signal handlers are in place)."""
        with self._log.open("rb") as log:
            log.seek(self._mark)
            return b'"msg":"consuming"' in log.read()

    def drain_deadline_passed(self) -> bool:
        """This run's drain ended at `CONSUMER_SHUTDOWN_TIMEOUT` (exit 1 by design)."""
        with self._log.open("rb") as log:
            log.seek(self._mark)
            return b"stopping with unfinished work" in log.read()

    def refused_to_start(self) -> bool:
        """The last run ended with the service's `cannot run` line (a broker
        or sink down at start-up: exit 1 for the supervisor to retry)."""
        with self._log.open("rb") as log:
            log.seek(max(0, log.seek(0, 2) - 2_000))
            return b"cannot run" in log.read()


@dataclass(frozen=True, slots=True)
class Exit:
    member: str
    code: int
    at: float  # seconds since the run began
    cause: str  # the fault that explains it, or "unexplained"


class Supervisor:
    def __init__(self, make: Callable[[str], Member], clock: Callable[[], float],
                 restart_delay: float = 2.0) -> None:
        self._make = make
        self._clock = clock
        self._restart_delay = restart_delay
        self.members: dict[str, Member] = {}
        self.exits: list[Exit] = []
        self._task: asyncio.Task[None] | None = None
        self._restarting: set[asyncio.Task[None]] = set()

    def start(self, name: str) -> Member:
        """Start `name`'s process; it must not be running (one process per name)."""
        member = self.members.get(name) or self._make(name)
        if member.alive or member.exiting:
            raise RuntimeError(f"member {name} is still running")
        self.members[name] = member
        member.faulted = False
        member.start()
        return member

    def running(self, name: str) -> bool:
        """Alive, or its exit not recorded yet."""
        member = self.members.get(name)
        return member is not None and (member.alive or member.exiting)

    def up(self, name: str) -> bool:
        member = self.members.get(name)
        return member is not None and member.alive and not member.faulted

    async def signal_exit(self, name: str, sig: signal.Signals, cause: str,
                          within: float) -> int | None:
        """Send `sig` and wait for the exit (None if it outlived `within` s:
        then it is killed). The member stays down until `start(name)`."""
        member = self.members[name]
        member.faulted = True
        if member.proc is None or member.proc.poll() is not None:
            return member.code()
        member.exiting = True
        try:
            member.proc.send_signal(sig)
            code = await _wait_exit(member, within)
            if code is None:
                member.kill()
                cause = f"{cause} (did not exit)"
            elif code == -signal.SIGTERM and not member.consuming():
                cause = f"{cause} {EARLY}"
            elif code == 1 and sig is signal.SIGTERM and member.drain_deadline_passed():
                cause = f"{cause} {DEADLINE}"
            final = member.code()
            assert final is not None
            self.exits.append(Exit(name, final, self._clock(), cause))
        finally:
            member.exiting = False
        return code

    def pause(self, name: str) -> None:
        member = self.members[name]
        member.faulted = True
        if member.pid is not None:
            os.kill(member.pid, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        member = self.members[name]
        if member.pid is not None and member.alive:
            os.kill(member.pid, signal.SIGCONT)
        member.faulted = False

    def start_watching(self) -> None:
        self._task = asyncio.create_task(self._watch_routine(), name="chaos-supervisor")

    async def _watch_routine(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            for name, member in list(self.members.items()):
                code = member.code()
                if member.faulted or code is None or member.proc is None:
                    continue
                cause = CANNOT_RUN if member.refused_to_start() else "unexplained"
                self.exits.append(Exit(name, code, self._clock(), cause))
                member.proc = None  # noted once; restarted below
                task = asyncio.create_task(self._restart(name))
                self._restarting.add(task)
                task.add_done_callback(self._restarting.discard)

    async def _restart(self, name: str) -> None:
        await asyncio.sleep(self._restart_delay)
        self.start(name)

    async def stop_all(self, within: float) -> dict[str, int | None]:
        """SIGTERM every live member at once; their exit codes (None: killed
        after `within` s). Stops watching first."""
        await self._stop_watching()
        live = [n for n, m in self.members.items() if m.alive]
        codes = await asyncio.gather(*(self.signal_exit(n, signal.SIGTERM, "final stop",
                                                        within) for n in live))
        return dict(zip(live, codes, strict=True))

    async def _stop_watching(self) -> None:
        tasks = [t for t in (self._task, *self._restarting) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None

    def kill_all(self) -> None:
        """Cleanup: SIGCONT (a stopped process cannot die of SIGTERM) and
        SIGKILL every member still running. Blocking, idempotent."""
        for member in self.members.values():
            if member.proc is not None and member.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(member.proc.pid, signal.SIGCONT)
                member.kill()


async def _wait_exit(member: Member, within: float) -> int | None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        code = member.code()
        if code is not None:
            return code
        await asyncio.sleep(0.1)
    return None
