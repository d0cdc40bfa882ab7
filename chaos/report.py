"""The run's figures as one table and one final line, and the verdict.

Pure: takes the outcomes, exits, lag samples and accounts; returns text and
the list of problems (empty = the run passed).
"""

from __future__ import annotations

import math
import signal
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from chaos.accounting import Accounts
from chaos.faults import Outcome
from chaos.lag import LagSample
from chaos.schedule import Kind
from chaos.supervisor import CANNOT_RUN, DEADLINE, EARLY, Exit

OUTAGES = frozenset({Kind.BROKER, Kind.POSTGRES, Kind.HTTP_429, Kind.HTTP_500})
#: After the broker is back, the group coordinator needs a moment to load.
START_GRACE = 15.0


@dataclass(frozen=True, slots=True)
class Verdict:
    table: str
    line: str
    problems: list[str]


#: An extra delivery: (previous delivery at, its member, redelivered at), in
#: seconds since the run began.
Extra = tuple[float, str, float]


def attribute(outcomes: Sequence[Outcome], extra: Sequence[Extra]) -> list[int]:
    """Extra deliveries per outcome; the last slot counts those no fault explains."""
    counts = [0] * (len(outcomes) + 1)
    for pick in blame(outcomes, extra):
        counts[pick] += 1
    return counts


def blame(outcomes: Sequence[Outcome], extra: Sequence[Extra]) -> list[int]:
    """For each extra delivery, the index of the fault to blame
    (len(outcomes): none).

    The fault to blame was under way between the delivery that did not get
    committed and the redelivery: first choice, one that hit the member of
    that delivery (a SIGKILL, a SIGSTOP); else the earliest that began in
    between (a broker restart); else the latest one still under way."""
    picks = []
    spans = [(o.started, o.ended if o.ended is not None else math.inf, i)
             for i, o in enumerate(outcomes) if o.started is not None]
    spans.sort()
    for previous, member, at in extra:
        during = [(s, i) for s, e, i in spans if s <= at and e >= previous]
        own = [i for _, i in during if outcomes[i].member == member]
        began = [i for s, i in during if s > previous]
        picks.append((own or began or [i for _, i in during[-1:]] or [len(outcomes)])[0])
    return picks


def recovery(out: Outcome, lag: Sequence[LagSample], threshold: int) -> float | None:
    """Seconds from the fault's start until the group's lag was back under
    `threshold` once its target was whole again; None if it never was."""
    if out.started is None or out.ended is None:
        return None
    for t, value in lag:
        if t >= out.ended and value is not None and value <= threshold:
            return t - out.started
    return None


def explain(exits: Sequence[Exit], outcomes: Sequence[Outcome], drain: float) -> list[str]:
    """Exits no fault explains: SIGKILL must read -9; SIGTERM (a fault, the
    joiner leaving, the final stop) must read 0 — or 1 when its drain hit
    the shutdown deadline (the member's log says so) or an outage overlapped
    the drain. A (re)start
    refused with `cannot run` (exit 1) is explained only while the broker or
    PostgreSQL is down, or within `START_GRACE` s of its return."""
    outages = [(o.started, o.ended) for o in outcomes
               if o.fault.kind in OUTAGES and o.started is not None]
    down = [(o.started, (o.ended or math.inf) + START_GRACE) for o in outcomes
            if o.fault.kind in (Kind.BROKER, Kind.POSTGRES) and o.started is not None]
    problems = []
    for e in exits:
        if e.cause.startswith(Kind.SIGKILL.value):
            ok = e.code == -9
        elif e.cause == CANNOT_RUN:
            ok = e.code == 1 and any(s <= e.at <= end for s, end in down)
        elif e.cause == "unexplained" or e.cause.endswith("(did not exit)"):
            ok = False
        elif e.cause.endswith(EARLY):
            ok = e.code == -signal.SIGTERM
        elif e.cause.endswith(DEADLINE):
            ok = e.code == 1
        else:
            overlapped = any(s <= e.at and (end is None or end >= e.at - drain)
                             for s, end in outages)
            ok = e.code == 0 or (e.code == 1 and overlapped)
        if not ok:
            problems.append(f"member {e.member} exited {e.code} at t={e.at:.1f}s ({e.cause})")
    return problems


def verdict(*, seed: int, outcomes: Sequence[Outcome], exits: Sequence[Exit],
            lag: Sequence[LagSample], threshold: int, accounts: Accounts,
            extra: Sequence[Extra], drain: float, drained: bool,
            exactly_once: bool = False) -> Verdict:
    per_fault = attribute(outcomes, extra)
    codes: dict[str, list[str]] = {}
    for e in exits:
        codes.setdefault(e.cause.split(" ")[0], []).append(str(e.code))
    rows = [f"{'#':>2} {'fault':<9} {'target':<10} {'at s':>6} {'hold s':>6} {'exit':>6} "
            f"{'extra':>7} {'recovered s':>11}  note"]
    for i, out in enumerate(outcomes):
        f = out.fault
        rec = recovery(out, lag, threshold)
        exit_codes = ",".join(codes.get(out.index, [])) or "-"
        rows.append(f"{i + 1:>2} {f.kind.value:<9} {f.target:<10} "
                    f"{(out.started or f.at):>6.1f} {f.hold:>6.1f} {exit_codes:>6} "
                    f"{per_fault[i]:>7} {'-' if rec is None else f'{rec:.1f}':>11}  {out.note}")
    rows.append(f"   {'(no fault under way)':<44} {per_fault[-1]:>7}")
    by_kind: Counter[str] = Counter()
    n_kind: Counter[str] = Counter()
    for i, out in enumerate(outcomes):
        by_kind[out.fault.kind.value] += per_fault[i]
        n_kind[out.fault.kind.value] += 1
    rows.append("")
    rows.append("extra deliveries per fault type: " + ", ".join(
        f"{k} {by_kind[k]}/{n_kind[k]} = {by_kind[k] / n_kind[k]:.0f} each"
        for k in sorted(n_kind)))
    finals = [f"{e.member}:{e.code}" for e in exits if e.cause == "final stop"]
    rows.append(f"final stop exit codes: {' '.join(finals) or '-'}; "
                f"lag threshold for recovery: {threshold} records")
    a = accounts
    rows.append(f"dlq: {a.dlq} of {a.invalid} invalid dead-lettered, missing {a.dlq_missing}, "
                f"repeated copies {a.dlq_repeated}, valid dead-lettered {a.valid_dead_lettered}; "
                f"extra deliveries {a.redeliveries}, in-place retries {a.retried}")
    done = sum(1 for o in outcomes if o.started is not None)
    line = (f"chaos: faults={done} produced={a.produced} valid={a.valid} rows={a.rows} "
            f"lost={a.lost} doubled={a.doubled} dlq={a.dlq} redone={a.redone} "
            f"overcount={a.overcount} keys_off={a.keys_off} "
            f"delivery={'exactly_once' if exactly_once else 'at_least_once'} seed={seed}")
    problems = explain(exits, outcomes, drain)
    if not drained:
        problems.append("the group did not drain: lag not 0 within the drain limit, or "
                        "stopped falling for 60 s")
    if a.lost:
        problems.append(f"{a.lost} valid events lost, e.g. {', '.join(a.lost_sample)}")
    if a.doubled:
        problems.append(f"{a.doubled} doubled rows")
    if a.valid_dead_lettered:
        problems.append(f"{a.valid_dead_lettered} valid events dead-lettered")
    if a.dlq_missing:
        problems.append(f"{a.dlq_missing} invalid events missing from the dead-letter topic")
    if exactly_once and (a.overcount or a.keys_off):
        problems.append(f"exactly-once counters off: overcount {a.overcount}, "
                        f"{a.keys_off} keys differ")
    if a.never_handled:
        problems.append(f"{a.never_handled} rows without a handler invocation in the ledger")
    problems += [f"fault {o.index} {o.note}" for o in outcomes if o.note]
    return Verdict("\n".join(rows), line, problems)
