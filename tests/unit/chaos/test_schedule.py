from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chaos.schedule import MEMBER_KINDS, TARGETS, Fault, Kind, Timing, plan

MEMBERS = ["m1", "m2", "m3"]


def busy_until(fault: Fault, timing: Timing) -> float:
    return fault.at + timing.busy(fault.kind, fault.hold)


@given(st.integers(0, 2**32), st.integers(0, 40), st.floats(0, 60), st.floats(30, 600))
def test_plan_keeps_its_promises(seed: int, count: int, start: float, span: float) -> None:
    timing = Timing()
    faults = plan(seed, count=count, start=start, end=start + span, members=MEMBERS)
    assert len(faults) == count
    assert faults == plan(seed, count=count, start=start, end=start + span, members=MEMBERS)
    assert [f.at for f in faults] == sorted(f.at for f in faults)
    assert all(f.at >= start for f in faults)
    if count >= len(Kind):
        assert {f.kind for f in faults} == set(Kind)
    for f in faults:
        if f.kind in MEMBER_KINDS:
            assert f.target in MEMBERS
        else:
            assert f.target == TARGETS[f.kind]
        if f.kind is Kind.SIGSTOP:
            assert f.hold > timing.session_timeout  # long enough to be evicted
        assert f.hold >= 0
    # Never two faults on one target at once (holds, restarts and rejoins included).
    for i, f in enumerate(faults):
        for g in faults[i + 1:]:
            if g.target == f.target:
                assert g.at >= busy_until(f, timing) - 1e-3


def test_default_chaos_schedule_slips_little_past_its_window() -> None:
    # `make chaos`: 22 faults between 15 s and 225 s; the run keeps producing
    # until the last one is over, so a slip only makes the run longer.
    for seed in range(300):
        faults = plan(seed, count=22, start=15, end=225, members=MEMBERS)
        assert faults[-1].at <= 225 + 60, seed
        assert sum(f.at > 225 for f in faults) <= 3, seed


def test_seeds_give_different_schedules() -> None:
    plans = {tuple(plan(s, count=20, start=0, end=200, members=MEMBERS)) for s in range(20)}
    assert len(plans) == 20


def test_kinds_can_be_restricted() -> None:
    faults = plan(3, count=10, start=0, end=100, members=MEMBERS, kinds=[Kind.SIGKILL])
    assert {f.kind for f in faults} == {Kind.SIGKILL}


def test_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="member"):
        plan(1, count=3, start=0, end=10, members=[])
    with pytest.raises(ValueError, match="count"):
        plan(1, count=-1, start=0, end=10, members=MEMBERS)
