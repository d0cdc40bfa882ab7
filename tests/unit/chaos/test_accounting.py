"""The final accounting and the verdict, on hand-made inputs."""

from __future__ import annotations

from collections import Counter

from chaos.accounting import Invocation, Produced, account
from chaos.faults import Outcome
from chaos.report import attribute, explain
from chaos.schedule import Fault, Kind
from chaos.supervisor import CANNOT_RUN, DEADLINE, EARLY, Exit

PRODUCED = Produced(valid={(0, 0): "a", (0, 1): "b", (1, 0): "c"},
                    invalid=frozenset({(0, 2), (1, 1)}), keys=Counter({"k1": 2, "k2": 1}))
EXACT = {"k1": 2, "k2": 1}  # the per-key counters of a run that counted each event once


def inv(event: str, attempt: int, at: int, member: str = "m1") -> Invocation:
    return Invocation(event, attempt, at, member)


def test_a_clean_run_counts_nothing_lost_doubled_or_redone() -> None:
    ledger = [inv("a", 1, 1), inv("b", 1, 2), inv("c", 1, 3)]
    acc = account(PRODUCED, ["a", "b", "c"], [(0, 2), (1, 1)], ledger, EXACT)
    assert (acc.produced, acc.valid, acc.invalid, acc.rows) == (5, 3, 2, 3)
    assert (acc.lost, acc.doubled, acc.dlq, acc.redone, acc.retried) == (0, 0, 2, 0, 0)
    assert acc.ok


def test_lost_doubled_and_dead_letter_mistakes_are_counted() -> None:
    acc = account(PRODUCED, ["a", "a", "zz"], [(0, 0), (0, 2), (0, 2)],
                  [inv("a", 1, 1)], EXACT)
    assert acc.lost == 2  # b and c
    assert acc.lost_sample == ["b", "c"]
    assert acc.doubled == 2  # a twice, zz never produced
    assert acc.valid_dead_lettered == 1  # (0, 0) is a valid event
    assert (acc.dlq, acc.dlq_missing, acc.dlq_repeated) == (1, 1, 1)
    assert not acc.ok


def test_redone_counts_deliveries_not_in_place_retries() -> None:
    ledger = [inv("a", 1, 10, "m1"), inv("a", 2, 11, "m1"), inv("a", 3, 12, "m1"),
              inv("b", 1, 20, "m1"), inv("b", 1, 50, "m2"), inv("b", 1, 90, "m3"),
              inv("c", 1, 5)]
    acc = account(PRODUCED, ["a", "b", "c"], [(0, 2), (1, 1)], ledger, EXACT)
    assert acc.retried == 2
    assert acc.redone == 1  # b
    assert acc.redeliveries == 2
    assert [(r.previous_ns, r.previous_member, r.at_ns) for r in acc.redeliveries_seen] == [
        (20, "m1", 50), (50, "m2", 90)]


def test_counters_off_are_overcount_and_keys_off() -> None:
    acc = account(PRODUCED, ["a", "b", "c"], [(0, 2), (1, 1)], [], {"k1": 3, "k2": 1, "k3": 1})
    assert (acc.overcount, acc.keys_off) == (2, 2)  # k1 once too often, k3 never produced
    exact = account(PRODUCED, ["a", "b", "c"], [(0, 2), (1, 1)], [], EXACT)
    assert (exact.overcount, exact.keys_off) == (0, 0)


def test_a_row_without_a_ledger_line_is_flagged() -> None:
    acc = account(PRODUCED, ["a", "b", "c"], [(0, 2), (1, 1)], [inv("a", 1, 1)], EXACT)
    assert acc.never_handled == 2
    assert not acc.ok


def outcome(kind: Kind, target: str, started: float, ended: float) -> Outcome:
    return Outcome(Fault(started, kind, target, ended - started), started=started, ended=ended)


def test_redeliveries_go_to_the_fault_that_hit_the_first_delivery() -> None:
    kill = outcome(Kind.SIGKILL, "m1", 10, 13)
    broker = outcome(Kind.BROKER, "broker", 11, 30)
    join = outcome(Kind.JOIN, "joiner", 40, 60)
    faults = [kill, broker, join]
    counts = attribute(faults, [
        (9.5, "m1", 14.0),  # delivered by m1 just before it was killed
        (10.5, "m2", 31.0),  # m2's work lost to the broker restart
        (45.0, "m4", 70.0),  # the joiner's work, redone after it left
        (35.0, "m2", 36.0),  # no fault under way
    ])
    assert counts == [1, 1, 1, 1]


def test_exits_are_explained_by_their_fault_or_not() -> None:
    pg = outcome(Kind.POSTGRES, "postgres", 100, 110)
    faults = [outcome(Kind.SIGKILL, "m1", 10, 12), pg]
    exits = [
        Exit("m1", -9, 10, "sigkill@10s"),
        Exit("m2", 0, 20, "sigterm@20s"),
        Exit("m3", 1, 105, CANNOT_RUN),  # restarted while PostgreSQL was down
        Exit("m4", -15, 30, f"join@25s {EARLY}"),
        Exit("m2", 1, 108, "sigterm@100s"),  # drain overlapped the outage
        Exit("m3", 1, 150, f"sigterm@120s {DEADLINE}"),  # drain outlived its deadline
        Exit("m1", 0, 300, "final stop"),
    ]
    assert explain(exits, faults, drain=30) == []
    wrong = [
        Exit("m1", 0, 10, "sigkill@10s"),
        Exit("m3", 1, 200, CANNOT_RUN),  # nothing was down
        Exit("m2", 1, 250, "sigterm@250s"),
        Exit("m2", 3, 260, "unexplained"),
        Exit("m1", -9, 300, "final stop (did not exit)"),
        Exit("m3", 0, 310, f"sigterm@300s {DEADLINE}"),
    ]
    assert len(explain(wrong, faults, drain=30)) == len(wrong)
