"""Dispatch: a fixed pool of workers and the ordering modes.

Work moves in *runs*: consecutive records of one lane. A lane is what must be
sequential — the partition (`partition`), the (partition, key) pair (`key`),
or nothing (`unordered`). A lane has at most one run in progress or ready; the
rest wait behind it, so a slow lane holds only itself and never a worker that
another lane could use. Keyless records in `key` mode have no order to keep
(producers spread them across partitions at random) and are dispatched as
`unordered`.

A processor that `takes_runs` (one call per run: a batch handler) gets the
free keys of a fetch *packed*: up to `concurrency` runs per fetch, each
holding whole keys and all their lanes. Every key stays sequential; a slow
run then holds the keys it carries (per-event handlers keep one run per key).

Workers never create a task per message. A processor that takes runs gets
the run in chunks of at most `MAX_RUN` records; any other gets runs of one
record, so a revocation stops it between two records. Either way a worker
waits for its turn before each chunk: one chunk starts per event-loop
iteration, so I/O is polled between any two.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Hashable, Sequence

from consumer.config import Ordering
from consumer.engine.partition import PartitionState
from consumer.types import Processor, Record

log = logging.getLogger("consumer.engine")

#: Most records handed to the processor in one call (and processed between
#: two turns, see `_turn`): large enough that per-call costs vanish, small
#: enough that one chunk of the store path takes a few milliseconds.
MAX_RUN = 256
#: Fewest records per pack of keys, so small fetches still make long runs.
MIN_PACK = 64


class Run:
    """Records of one partition in offset order, and the lanes it holds
    (none when unordered; one, or in a pack several keys)."""

    __slots__ = ("blocked", "lanes", "records", "state")

    def __init__(self, state: PartitionState, records: Sequence[Record],
                 lanes: tuple[Hashable, ...]) -> None:
        self.state = state
        self.records = records
        self.lanes = lanes
        self.blocked = 0  # lanes on which an earlier run is still ahead of it


class Dispatcher:
    """`submit` never blocks; flow control bounds what can be queued.
    `on_error` is called (once per failure) when `process_run` raises: the service
    must stop, and the run's unprocessed records stay undone."""

    def __init__(self, processor: Processor, ordering: Ordering, concurrency: int,
                 on_error: Callable[[BaseException], None]) -> None:
        self._processor = processor
        # A processor that handles a run in one call (a batch handler) wants
        # long runs: in key mode, the free keys of a fetch are packed.
        self._pack = processor.takes_runs
        self._ordering = ordering
        self._concurrency = concurrency
        self._on_error = on_error
        self._ready: deque[Run] = deque()
        self._waiting: dict[Hashable, deque[Run]] = {}  # lane → runs behind the active one
        #: Workers waiting for a run, each on a future of its own: a new run
        #: wakes exactly one of them (an Event would wake them all).
        self._idle: deque[asyncio.Future[None]] = deque()
        self._turns: deque[asyncio.Future[None]] = deque()
        self._passing = False
        self._tasks: list[asyncio.Task[None]] = []
        self._active = 0
        self._stopped = False

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker_routine(), name=f"consumer-worker-{i}")
                       for i in range(self._concurrency)]

    async def close(self) -> None:
        """Cancel the workers and wait for them. Safe to call twice."""
        self._stopped = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    @property
    def busy(self) -> int:
        """Runs being processed right now."""
        return self._active

    @property
    def waiting_turns(self) -> int:
        """Chunks ready to run that only wait for their turn (loop
        iterations), as opposed to runs waiting for a free worker."""
        return len(self._turns)

    def alive(self) -> bool:
        return bool(self._tasks) and not any(t.done() for t in self._tasks)

    def submit(self, state: PartitionState, records: Sequence[Record]) -> None:
        if self._ordering is Ordering.PARTITION:
            self._enqueue(Run(state, records, (state.tp,)))
            return
        if self._ordering is Ordering.KEY:
            records = self._pack_keys(state, records) if self._pack else self._by_key(
                state, records)
        self._spread(state, records)

    def _by_key(self, state: PartitionState, records: Sequence[Record]) -> list[Record]:
        """One run per key; returns the keyless records."""
        by_key: dict[bytes, list[Record]] = {}
        keyless: list[Record] = []
        for record in records:
            key = record.key
            if key is None:
                keyless.append(record)
            else:
                by_key.setdefault(key, []).append(record)
        tp = state.tp
        for key, run in by_key.items():
            self._enqueue(Run(state, run, ((tp, key),)))
        return keyless

    def _pack_keys(self, state: PartitionState, records: Sequence[Record]) -> list[Record]:
        """The keys of a fetch go, whole, into up to `concurrency` packs: one
        run each, in offset order, holding all its keys' lanes — so a batch
        handler gets long runs although a fetch has few records per key. A
        pack starts once it is first in line on every lane it holds (keys
        with earlier work still in progress keep it waiting). Returns the
        keyless records."""
        tp = state.tp
        count = max(1, min(self._concurrency, len(records) // MIN_PACK))
        packs: list[list[Record]] = [[] for _ in range(count)]
        lanes: list[list[Hashable]] = [[] for _ in range(count)]
        slots: dict[bytes, int] = {}  # key → its pack
        keyless: list[Record] = []
        for record in records:
            key = record.key
            if key is None:
                keyless.append(record)
                continue
            slot = slots.get(key)
            if slot is None:
                slot = slots[key] = len(slots) % count
                lanes[slot].append((tp, key))
            packs[slot].append(record)
        for pack, held in zip(packs, lanes, strict=True):
            if pack:
                self._enqueue(Run(state, pack, tuple(held)))
        return keyless

    def _spread(self, state: PartitionState, records: Sequence[Record]) -> None:
        # Unordered: enough runs to keep every worker busy, few enough to keep
        # the per-run overhead negligible.
        if not records:
            return
        size = max(1, -(-len(records) // self._concurrency))
        for start in range(0, len(records), size):
            self._push(Run(state, records[start:start + size], ()))

    def _enqueue(self, run: Run) -> None:
        """Take each free lane of `run`, queue behind each busy one; it is
        ready once no earlier run is ahead of it on any of its lanes."""
        waiting = self._waiting
        for lane in run.lanes:
            queue = waiting.get(lane)
            if queue is None:
                waiting[lane] = deque()
            else:
                queue.append(run)
                run.blocked += 1
        if not run.blocked:
            self._push(run)

    def _push(self, run: Run) -> None:
        self._ready.append(run)
        idle = self._idle
        while idle:  # wake one idle worker; it takes the first ready run
            waiter = idle.popleft()
            if not waiter.done():  # a cancelled worker gave its place up
                waiter.set_result(None)
                return

    def _finish(self, run: Run) -> None:
        for lane in run.lanes:
            self._release(lane)

    def _release(self, lane: Hashable) -> None:
        """The run holding `lane` is over: the next in line takes it."""
        queue = self._waiting[lane]
        if not queue:
            del self._waiting[lane]
            return
        run = queue.popleft()
        run.blocked -= 1
        if not run.blocked:
            self._push(run)

    def cancel(self, states: set[PartitionState]) -> int:
        """Drop queued (not started) runs of `states`; returns records dropped."""
        dropped: dict[int, Run] = {}
        queued_on: dict[int, set[Hashable]] = {}  # run → lanes it was queued on
        for lane, queue in self._waiting.items():
            if any(run.state in states for run in queue):
                for run in queue:
                    if run.state in states:
                        dropped[id(run)] = run
                        queued_on.setdefault(id(run), set()).add(lane)
                keep = [run for run in queue if run.state not in states]
                queue.clear()
                queue.extend(keep)
        ready, self._ready = self._ready, deque()
        for run in ready:
            if run.state in states:
                dropped[id(run)] = run
            else:
                self._ready.append(run)
        for key, run in dropped.items():
            run.state.drop(run.records)
            # Give up the lanes it held (where it was first in line); where
            # it was only queued, leaving the queue was enough.
            for lane in run.lanes:
                if lane not in queued_on.get(key, ()):
                    self._release(lane)
        return sum(len(run.records) for run in dropped.values())

    async def _next(self) -> Run:
        # Runs stay in `_ready` until a worker takes one (so `cancel` sees
        # every run not started); a woken worker may find it taken by a
        # worker that came back first, and waits again.
        while not self._ready:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._idle.append(waiter)
            await waiter
        return self._ready.popleft()

    async def _turn(self) -> None:
        """Wait for this worker's turn to run a chunk: one waiting worker is
        let through per event-loop iteration, so the loop polls I/O (probes,
        heartbeats, fetches, acknowledgements) between any two chunks. A
        `sleep(0)` per worker is not enough: every worker woken in the same
        iteration would run its chunk before the loop looks at I/O again."""
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[None] = loop.create_future()
        self._turns.append(turn)
        if not self._passing:
            self._passing = True
            loop.call_soon(self._pass_turn)
        await turn

    def _pass_turn(self) -> None:
        turns = self._turns
        while turns:
            turn = turns.popleft()
            if not turn.done():  # a cancelled waiter gave its turn up
                turn.set_result(None)
                break
        if turns:
            asyncio.get_running_loop().call_soon(self._pass_turn)
        else:
            self._passing = False

    async def _worker_routine(self) -> None:
        # A processor that takes runs gets chunks; any other, one record at a
        # time, so a revocation stops it between two records.
        takes_runs = self._processor.takes_runs
        process_run = self._processor.process_run
        while not self._stopped:
            run = await self._next()
            state = run.state
            records = run.records
            self._active += 1
            start = 0  # records[start:] were never started
            try:
                while start < len(records) and not (state.revoking or self._stopped):
                    # The store path never suspends on its own (emitting only
                    # buffers): without turns, workers would hold the loop for
                    # a whole fetch while probes, heartbeats and commits wait.
                    await self._turn()
                    if state.revoking or self._stopped:
                        break
                    stop = min(start + MAX_RUN, len(records))
                    if takes_runs:
                        chunk, start = records[start:stop], stop
                        await process_run(chunk, state.done_run)
                    else:
                        while start < stop and not (state.revoking or self._stopped):
                            start += 1
                            await process_run(records[start - 1:start], state.done_run)
                state.drop(records[start:])
            except asyncio.CancelledError:
                # The records being processed may still complete (their rows
                # are with the batcher); only the ones never started are dropped.
                state.drop(records[start:])
                raise
            except Exception as exc:  # noqa: BLE001 - surfaced to the engine, which stops
                state.drop(records[start:])
                self._stopped = True
                self._on_error(exc)
            finally:
                self._active -= 1
                self._finish(run)
