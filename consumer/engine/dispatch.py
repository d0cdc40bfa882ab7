"""Dispatch: a fixed pool of workers and the ordering modes.

Work moves in *runs*: consecutive records of one lane. A lane is what must be
sequential — the partition (`partition`), the (partition, key) pair (`key`),
or nothing (`unordered`). A lane has at most one run in progress or ready; the
rest wait behind it, so a slow lane holds only itself and never a worker that
another lane could use. Keyless records in `key` mode have no order to keep
(producers spread them across partitions at random) and are dispatched as
`unordered`.

Workers never create a task per message. A processor with `process_run`
gets the run in chunks of at most `MAX_RUN` records, each completed with one
`done_run`; any other gets one `await processor.process(record, done)` per
record. Either way the worker yields to the event loop after each chunk.
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
#: two yields to the event loop): large enough that per-call costs vanish,
#: small enough that one chunk of the store path takes a few milliseconds.
MAX_RUN = 500


class Run:
    __slots__ = ("lane", "records", "state")

    def __init__(self, state: PartitionState, records: Sequence[Record],
                 lane: Hashable | None) -> None:
        self.state = state
        self.records = records
        self.lane = lane


class Dispatcher:
    """`submit` never blocks; flow control bounds what can be queued.
    `on_error` is called (once per failure) when `process` raises: the service
    must stop, and the run's unprocessed records stay undone."""

    def __init__(self, processor: Processor, ordering: Ordering, concurrency: int,
                 on_error: Callable[[BaseException], None]) -> None:
        self._processor = processor
        self._ordering = ordering
        self._concurrency = concurrency
        self._on_error = on_error
        self._ready: deque[Run] = deque()
        self._waiting: dict[Hashable, deque[Run]] = {}  # lane → runs behind the active one
        self._wakeup = asyncio.Event()
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

    def alive(self) -> bool:
        return bool(self._tasks) and not any(t.done() for t in self._tasks)

    def submit(self, state: PartitionState, records: Sequence[Record]) -> None:
        if self._ordering is Ordering.PARTITION:
            self._enqueue(Run(state, records, state.tp))
            return
        if self._ordering is Ordering.KEY:
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
                self._enqueue(Run(state, run, (tp, key)))
            records = keyless
        self._spread(state, records)

    def _spread(self, state: PartitionState, records: Sequence[Record]) -> None:
        # Unordered: enough runs to keep every worker busy, few enough to keep
        # the per-run overhead negligible.
        if not records:
            return
        size = max(1, -(-len(records) // self._concurrency))
        for start in range(0, len(records), size):
            self._push(Run(state, records[start:start + size], None))

    def _enqueue(self, run: Run) -> None:
        waiting = self._waiting.get(run.lane)
        if waiting is None:
            self._waiting[run.lane] = deque()
            self._push(run)
        else:
            waiting.append(run)

    def _push(self, run: Run) -> None:
        self._ready.append(run)
        self._wakeup.set()

    def _finish(self, run: Run) -> None:
        if run.lane is None:
            return
        waiting = self._waiting[run.lane]
        if waiting:
            self._push(waiting.popleft())
        else:
            del self._waiting[run.lane]

    def cancel(self, states: set[PartitionState]) -> int:
        """Drop queued (not started) runs of `states`; returns records dropped."""
        dropped = 0
        for waiting in self._waiting.values():
            if any(run.state in states for run in waiting):
                keep = deque(run for run in waiting if run.state not in states)
                for run in waiting:
                    if run.state in states:
                        run.state.drop(run.records)
                        dropped += len(run.records)
                waiting.clear()
                waiting.extend(keep)
        ready, self._ready = self._ready, deque()
        for run in ready:
            if run.state in states:
                run.state.drop(run.records)
                dropped += len(run.records)
                self._finish(run)
            else:
                self._ready.append(run)
        if self._ready:
            self._wakeup.set()
        return dropped

    async def _next(self) -> Run:
        while not self._ready:
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._ready.popleft()

    async def _worker_routine(self) -> None:
        run_process = getattr(self._processor, "process_run", None)
        process = self._processor.process
        while not self._stopped:
            run = await self._next()
            state = run.state
            records = run.records
            self._active += 1
            start = 0  # records[start:] were never started
            try:
                while start < len(records) and not (state.revoking or self._stopped):
                    stop = min(start + MAX_RUN, len(records))
                    if run_process is not None:
                        chunk, start = records[start:stop], stop
                        await run_process(chunk, state.done_run)
                    else:
                        while start < stop and not (state.revoking or self._stopped):
                            start += 1
                            await process(records[start - 1], state.done)
                    # A processor that never suspends (the store path only
                    # buffers) would otherwise hold the loop for a whole fetch:
                    # yield after each chunk, so probes, heartbeats and
                    # commits wait for one chunk at most.
                    await asyncio.sleep(0)
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
