"""The engine: fetch → flow control → dispatch, and done → tracker → commit.

It owns the aiokafka consumer, the fetch, commit and metrics routines, the
worker pool, and the rebalance listener. `run()` returns the exit code once
the engine has stopped: 0 after a complete drain, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence

from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError

from consumer.config import Settings
from consumer.engine.commit_policy import CommitPolicy
from consumer.engine.committer import Committer
from consumer.engine.dispatch import Dispatcher
from consumer.engine.flow import FlowControl
from consumer.engine.partition import PartitionState
from consumer.engine.resume import claim, position_of, resume
from consumer.engine.source import Consumer, KafkaConsumer
from consumer.observability.metrics import Metrics
from consumer.observability.partitions import PartitionGauges
from consumer.security import NOT_AUTHORIZED, KafkaSecurity
from consumer.types import TP, OffsetStore, Position, Processor, Record

log = logging.getLogger("consumer.engine")

_POLL_MS = 100  # short polls: pauses and resumes take effect within this
_DRAIN_POLL = 0.02
_SETTLE = 0.05  # longest wait for the workers after a fetch
_METRICS_EVERY = 0.5
#: Paused partitions are not fetched, so their high watermark stops moving:
#: ask the broker for their end offsets this often instead.
_END_OFFSETS_EVERY = 2.0
_POSITION_WITHIN = 0.05
#: Seconds the processor's close gets at least, even past the shutdown deadline
#: (the chart's terminationGracePeriodSeconds counts it).
PROCESSOR_CLOSE_MIN = 5.0


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def on_partitions_revoked(self, revoked: Iterable[TP]) -> None:
        await self._engine.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Iterable[TP]) -> None:
        await self._engine.on_assigned(set(assigned))


class Engine:
    def __init__(self, settings: Settings, processor: Processor, metrics: Metrics, *,
                 security: KafkaSecurity | None = None,
                 consumer: Consumer | None = None,
                 offsets: OffsetStore | None = None) -> None:
        """`consumer` is the Kafka client (the service's default: aiokafka
        from `settings` and `security`; tests give a fake). `offsets` is the
        store of exactly-once delivery (see `consumer.engine.resume`): given,
        each assignment is claimed there and resumed where it says, and the
        store reads each partition's progress through `position`."""
        self._settings = settings
        self._offsets = offsets
        self._processor = processor
        self._metrics = metrics
        self._gauges = PartitionGauges(metrics)
        #: End offsets of partitions whose high watermark is not moving (paused,
        #: not fetched yet), refreshed by `_end_offsets_routine`.
        self._ends: dict[TP, int] = {}
        self._flow = FlowControl(settings.max_in_flight, settings.max_in_flight_bytes,
                                 settings.resume_ratio)
        self._states: dict[TP, PartitionState] = {}
        self._retired = 0  # completions of states forgotten on revocation
        self._paused: set[TP] = set()
        self._dispatcher = Dispatcher(processor, settings.ordering, settings.concurrency,
                                      self._on_worker_error)
        self._consumer: Consumer = consumer or KafkaConsumer(settings, security)
        self._committer = Committer(self._consumer, metrics, settings.commit_timeout)
        self._policy = CommitPolicy(settings.commit_interval, settings.commit_every)
        self._stop = asyncio.Event()
        self._immediate = False
        self._error: BaseException | None = None
        self._fetch_task: asyncio.Task[None] | None = None
        self._flush_task: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._closed = False
        # Revocation must finish well inside the rebalance timeout, or the
        # group coordinator evicts us mid-drain.
        self._revoke_deadline = settings.rebalance_timeout_ms / 1000 * 0.6

    # -- lifecycle -------------------------------------------------------

    def request_stop(self, immediate: bool = False) -> None:
        """Ask the engine to stop: drain first unless `immediate`."""
        self._immediate = self._immediate or immediate
        self._stop.set()

    def healthy(self) -> bool:
        """The loop answers and the fetch routine and workers are alive."""
        if self._error is not None:
            return False
        routines = [self._fetch_task, *self._tasks]
        alive = all(t is not None and not t.done() for t in routines)
        return self._stop.is_set() or (alive and self._dispatcher.alive())

    @property
    def state(self) -> str:
        """`starting`, `consuming`, `draining` (asked to stop: finishing the
        work in flight before the last commit), `stopping` (without a drain:
        a second signal), `failed`, or `stopped`."""
        if self._error is not None:
            return "failed"
        if self._closed:
            return "stopped"
        if self._stop.is_set():
            return "stopping" if self._immediate else "draining"
        return "consuming" if self._started else "starting"

    def unready_reason(self) -> str | None:
        """Why the engine is not consuming, in one line for /readyz; None
        while it is (in the group: assigned, or waiting for an assignment)."""
        state = self.state
        if state == "consuming":
            return None
        return {
            "starting": "starting: not consuming yet",
            "draining": f"draining: stopping, {self._flow.messages} message(s) in flight to "
                        "finish before the last commit",
            "stopping": "stopping: without a drain",
            "failed": "failed: stopping after an error",
        }.get(state, "stopped")

    @property
    def in_flight(self) -> int:
        return self._flow.messages

    def paused(self) -> set[TP]:
        """Partitions the Kafka consumer has paused right now."""
        return set(self._consumer.paused())

    async def run(self) -> int:
        """Consume until `request_stop` or a fatal error; returns the exit code.
        Raises the broker's authorization refusal (missing READ on the group or
        a topic) after shutting down, for the caller to report."""
        await self._consumer.start()
        try:
            self._consumer.subscribe(self._settings.topics, _Listener(self))
            await self._dispatcher.start()
            self._fetch_task = asyncio.create_task(self._fetch_routine(), name="consumer-fetch")
            self._tasks = [
                asyncio.create_task(self._commit_routine(), name="consumer-commit"),
                asyncio.create_task(self._metrics_routine(), name="consumer-metrics"),
                asyncio.create_task(self._end_offsets_routine(), name="consumer-end-offsets"),
            ]
            self._started = True
            log.info("consuming", extra={"topics": self._settings.topics,
                                         "group": self._settings.group_id})
            stop_wait = asyncio.ensure_future(self._stop.wait())
            await asyncio.wait([stop_wait, self._fetch_task], return_when=asyncio.FIRST_COMPLETED)
            stop_wait.cancel()
            if self._fetch_task.done() and not self._fetch_task.cancelled():
                exc = self._fetch_task.exception()
                if exc is not None:
                    self._error = self._error or exc
                    if not isinstance(exc, NOT_AUTHORIZED):  # the caller reports it
                        log.error("fetch routine failed: %r", exc)
            code = await self._shutdown()
            if isinstance(self._error, NOT_AUTHORIZED):
                raise self._error
            return code
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop every task and the consumer. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        tasks = [t for t in (self._fetch_task, self._flush_task, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._dispatcher.close()
        try:
            await asyncio.wait_for(self._consumer.stop(), self._settings.commit_timeout)
        except TimeoutError:
            log.warning("consumer did not stop within %.0fs", self._settings.commit_timeout)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            # aiokafka's fetcher, closed while a fetch from an unreachable
            # broker backs off, lets that fetch's cancellation out of `stop()`.
            log.warning("consumer stopped with its fetch to an unreachable broker cancelled")

    async def _shutdown(self) -> int:
        """Stop fetching, drain (unless immediate), stop the workers, commit
        what is done, close the processor — in that order, so nothing is
        processed against a closing processor and nothing done is left
        uncommitted by a commit that ran too early."""
        deadline = time.monotonic() + self._settings.shutdown_timeout
        if self._fetch_task is not None:
            self._fetch_task.cancel()
            await asyncio.gather(self._fetch_task, return_exceptions=True)
        states = set(self._states.values())
        complete = False
        if not self._immediate and self._error is None:
            log.info("draining", extra={"in_flight": self._flow.messages})
            complete = await self._drain(states, self._settings.shutdown_timeout)
        if not complete:
            dropped = self._dispatcher.cancel(states)
            if dropped or self._flow.messages:
                log.warning("stopping with unfinished work",
                            extra={"in_flight": self._flow.messages, "never_started": dropped})
        await self._dispatcher.close()
        for task in self._tasks:  # no periodic commit may race the final one
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._skip_idle()
        if not await self._committer.commit(self._states.values(), self._consumer.assignment()):
            # Nothing is lost (what is done but uncommitted is consumed
            # again), but the stop was not clean: say so in the exit code.
            log.warning("final commit failed: messages done since the last commit will be "
                        "consumed again")
            complete = False
        # Closing flushes what is buffered; a sink that is down must not hold
        # the process past its deadline (what it did not write stays uncommitted).
        try:
            await asyncio.wait_for(self._processor.close(),
                                   max(PROCESSOR_CLOSE_MIN, deadline - time.monotonic()))
        except TimeoutError:
            log.warning("processor did not close before the shutdown deadline")
            complete = False
        return 0 if complete and self._error is None else 1

    async def _drain(self, states: set[PartitionState], within: float) -> bool:
        """Wait until `states` have nothing in flight. Starts a processor flush
        when the workers are idle, so batched writes do not wait for their
        latency trigger — without waiting on it: a sink that is down would
        hold the flush, and the deadline and a second signal must still win."""
        deadline = time.monotonic() + within
        while any(s.in_flight > 0 for s in states):
            now = time.monotonic()
            if now >= deadline or self._error is not None or self._immediate:
                return False
            flush = self._flush_task
            if self._dispatcher.busy == 0 and (flush is None or flush.done()):
                self._flush_task = asyncio.create_task(self._processor.flush(),
                                                       name="consumer-drain-flush")
                self._flush_task.add_done_callback(_log_flush_failure)
            await asyncio.sleep(_DRAIN_POLL)
        return True

    def _on_worker_error(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
            log.error("processing failed; stopping: %r", exc)
        self.request_stop(immediate=True)

    # -- routines --------------------------------------------------------

    async def _fetch_routine(self) -> None:
        consumer = self._consumer
        dispatcher = self._dispatcher
        fetched = self._metrics.fetched
        max_records = self._settings.max_poll_records
        while True:
            self._apply_flow()
            # Keep polling even when everything is paused: it returns {} and
            # keeps this member inside max_poll_interval_ms.
            limit = self._flow.fetch_limit(max_records)
            batch = await consumer.getmany(timeout_ms=_POLL_MS, max_records=limit)
            self._check_topics_readable()
            for tp, records in batch.items():
                state = self._states.get(tp)
                if state is None:
                    continue  # no longer ours: the next owner fetches them again
                if state.claiming:  # exactly-once: `resume` seeks back here
                    if state.unfetched is None:
                        state.unfetched = records[0].offset
                    continue
                if not state.accepting:
                    continue  # revoked: the next owner fetches them again
                fetched.labels(tp.topic).inc(len(records))
                state.deliver(records)
                todo = self._skip_done(state, records) if state.skip is not None else records
                if todo:
                    dispatcher.submit(state, todo)
            if batch:
                await self._let_workers_start()

    @staticmethod
    def _skip_done(state: PartitionState, records: Sequence[Record]) -> Sequence[Record]:
        """Exactly-once: complete at once the delivered records the database
        says are done; return the others, to handle."""
        skipped, rest = state.split_done(records)
        if skipped:
            state.done_run(skipped)
        return rest

    def position(self, tp: TP) -> Position | None:
        """The sink's read-only view of a partition (exactly-once delivery)."""
        return position_of(self._states.get(tp))

    def _check_topics_readable(self) -> None:
        """Raise `TopicAuthorizationFailedError` for a subscribed topic the
        broker refused us (no READ): nothing is assigned for it, and the
        service would idle, looking healthy, forever."""
        refused = self._consumer.refused_topics()
        if refused:
            denied = sorted(refused.intersection(self._settings.topics))
            if denied:
                raise TopicAuthorizationFailedError(", ".join(denied))

    async def _let_workers_start(self) -> None:
        """Let the workers get through the chunks they can start right away
        (one starts per loop iteration) before flow control looks at the
        in-flight count again — otherwise every fetch looks like a backlog
        to a fast pipeline and partitions get paused, their prefetched data
        dropped, for nothing. Work waiting for a free worker (a slow
        handler) is real pressure and is not waited for; nor anything past
        `_SETTLE` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _SETTLE
        await asyncio.sleep(0)
        while self._dispatcher.waiting_turns and loop.time() < deadline:  # noqa: ASYNC110 - one iteration at a time is the point
            await asyncio.sleep(0)

    def _apply_flow(self) -> None:
        want = self._flow.decide(self._paused)
        assigned = self._consumer.assignment()
        pause = (want - self._paused) & assigned
        resume = (self._paused - want) & assigned
        if pause:
            self._consumer.pause(*pause)
        if resume:
            self._consumer.resume(*resume)
        self._paused = want & assigned

    def _completed(self) -> int:
        """Messages done since start: never decreases, also across rebalances."""
        return self._retired + sum(s.completed for s in self._states.values())

    async def _commit_routine(self) -> None:
        last = time.monotonic()
        counted = 0
        tick = min(self._settings.commit_interval, 0.1)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            completed = self._completed()
            if self._policy.due(now, last, completed - counted):
                await self._skip_idle()
                # A failed commit leaves `counted` behind, so the policy asks
                # again after its interval even when nothing new completes:
                # an idle partition must not keep a stale committed offset.
                if await self._committer.commit(self._states.values(),
                                                self._consumer.assignment()):
                    counted = completed
                last = now

    async def _skip_idle(self) -> None:
        """Let partitions with nothing pending commit up to the consumer's
        position (past transaction markers and aborted records)."""
        for tp, state in list(self._states.items()):
            # Not while claiming (exactly-once), which drops what it fetches:
            # the consumer's position is then past undone work.
            if state.accepting and state.tracker.oldest_pending is None:
                position = await self._position(tp)
                if position is not None:
                    state.tracker.skip_to(position)

    async def _metrics_routine(self) -> None:
        m = self._metrics
        while True:
            m.in_flight_messages.set(self._flow.messages)
            m.in_flight_bytes.set(self._flow.bytes)
            m.paused_partitions.set(len(self._paused))
            m.assigned_partitions.set(len(self._states))
            ends = self._ends
            now = time.time()
            for tp, state in list(self._states.items()):
                highs = [h for h in (self._consumer.highwater(tp), ends.get(tp)) if h is not None]
                base = state.tracker.committable
                base = state.committed if base is None else base
                if state.tracker.oldest_pending is None:
                    # Nothing pending: the fetch position is where we are. It
                    # is past the last delivered offset after a transaction
                    # marker (lag would never reach 0), and known before the
                    # first delivery. For the gauges only, never for commits.
                    position = await self._position(tp)
                    if self._states.get(tp) is not state:
                        continue  # revoked meanwhile: its series are forgotten
                    if position is not None and (base is None or position > base):
                        base = position
                self._gauges.update(tp, high=max(highs, default=None), base=base,
                                    oldest_timestamp=state.oldest_undone_timestamp(), now=now,
                                    paused=tp in self._paused, in_flight=state.in_flight)
            await asyncio.sleep(_METRICS_EVERY)

    async def _end_offsets_routine(self) -> None:
        """Keep `_ends` fresh for the partitions whose high watermark does not
        move (paused, or not fetched yet). A broker round trip, so it runs
        beside the metrics routine instead of holding the other gauges."""
        while True:
            stale = {tp for tp in self._states
                     if tp in self._paused or self._consumer.highwater(tp) is None}
            if stale:
                self._ends = await self._end_offsets(stale)
            await asyncio.sleep(_END_OFFSETS_EVERY)

    async def _position(self, tp: TP) -> int | None:
        """The consumer's fetch position of `tp`, or None if it is not known
        at once (being reset, or no longer assigned): bounded short, the other
        gauges wait for it."""
        try:
            async with asyncio.timeout(_POSITION_WITHIN):
                position: int = await self._consumer.position(tp)
        except (KafkaError, TimeoutError):
            return None
        return position

    async def _end_offsets(self, tps: set[TP]) -> dict[TP, int]:
        """The partitions' end offsets from the broker; {} if it does not answer
        in time (the gauges then keep their last value until the next try).
        Bounded by the refresh period."""
        try:
            async with asyncio.timeout(_END_OFFSETS_EVERY):
                ends = dict(await self._consumer.end_offsets(list(tps)))
        except (KafkaError, TimeoutError) as exc:
            log.debug("end offsets unavailable: %r", exc)
            return {}
        return ends

    # -- rebalance -------------------------------------------------------

    async def on_revoked(self, revoked: set[TP]) -> None:
        """Drain the revoked partitions (bounded), commit them, forget them.

        Everything already fetched is finished first: in `key` and `unordered`
        modes records complete out of order, so dropping the queued ones would
        strand finished work behind an unfinished offset and the next owner
        would do it again. Past the deadline the rest is left to the next owner.

        Partitions *lost* — the coordinator evicted us (a frozen process, a
        session that expired) and has already given them to another member —
        are not drained: that member is processing the same records and no
        commit of ours can land, so draining would only do its work twice and
        delay our rejoin. What has not started is dropped, the rest fenced.
        """
        states = {self._states[tp] for tp in revoked if tp in self._states}
        if not states:
            return
        self._metrics.rebalances.labels("revoked").inc()
        for state in states:
            state.revoke()
        dropped = 0
        if self._consumer.member_lost():
            for state in states:
                state.fence()
            dropped = self._dispatcher.cancel(states)
            self._metrics.dropped_on_revoke.inc(dropped)
            log.warning("partitions lost: evicted from the group, their work is another "
                        "member's now", extra={"partitions": _names(revoked),
                                               "in_flight": sum(s.in_flight for s in states),
                                               "never_started": dropped})
        elif not await self._drain(states, self._revoke_deadline):
            for state in states:
                state.abandon()
            dropped = self._dispatcher.cancel(states)
            self._metrics.dropped_on_revoke.inc(dropped)
            log.warning("revocation deadline passed",
                        extra={"in_flight": sum(s.in_flight for s in states),
                               "never_started": dropped})
        await self._committer.commit(states, self._consumer.assignment())
        committed = {f"{s.tp.topic}[{s.tp.partition}]": s.committed for s in states}
        for state in states:
            state.fence()
            if self._offsets is not None:
                state.write_off()  # its rows will be fenced: they never complete
            self._retired += state.completed
            self._flow.revoke(state.tp)
            del self._states[state.tp]
        self._gauges.forget(state.tp for state in states)
        self._paused -= revoked
        log.info("partitions revoked", extra={"committed": committed,
                                              "left_for_next_owner": dropped})

    async def on_assigned(self, assigned: set[TP]) -> None:
        self._metrics.rebalances.labels("assigned").inc()
        new: list[PartitionState] = []
        for tp in assigned:
            if tp not in self._states:
                state = PartitionState(tp, self._flow, self._metrics.record_ages.labels(tp.topic),
                                       claiming=self._offsets is not None)
                self._states[tp] = state
                new.append(state)
        # aiokafka forgets pauses on every rebalance: decide again from scratch.
        self._paused = set()
        self._apply_flow()
        log.info("partitions assigned", extra={"partitions": _names(assigned)})
        if self._offsets is not None and new:
            claims = await claim(self._offsets, [s.tp for s in new], self._stop.is_set)
            for state in new:
                if state.tp in claims and self._states.get(state.tp) is state:
                    await resume(self._consumer, state, claims[state.tp],
                                 self._settings.commit_timeout)
            # Kafka catches up with the database (lag tools, KEDA read Kafka).
            await self._committer.commit(new, self._consumer.assignment())


def _log_flush_failure(flush: asyncio.Task[None]) -> None:
    if not flush.cancelled() and (exc := flush.exception()) is not None:
        log.warning("flush while draining failed: %r", exc)


def _names(tps: Iterable[TP]) -> list[str]:
    return sorted(f"{tp.topic}[{tp.partition}]" for tp in tps)
