"""Flow control: pause over the share or the global limit, resume below the
low watermark, with hysteresis."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consumer.engine.flow import FlowControl
from consumer.types import TP

TPS = [TP("t", p) for p in range(4)]


def test_under_pressure_the_partition_over_its_share_pauses_and_resumes_below_low() -> None:
    flow = FlowControl(max_messages=400, max_bytes=10**9, resume_ratio=0.5)
    loads = {tp: flow.assign(tp) for tp in TPS}
    flow.acquire(loads[TPS[0]], 150, 1_000)  # share = 100; global 150 < 200: no pressure
    assert flow.decide(set()) == set()
    flow.acquire(loads[TPS[1]], 60, 1_000)  # global 210 >= 200: pressure
    assert flow.decide(set()) == {TPS[0]}
    flow.release(loads[TPS[0]], 90, 400)  # 60: above its low watermark (50)
    flow.acquire(loads[TPS[2]], 80, 1)  # keep the pressure on
    assert flow.decide({TPS[0]}) == {TPS[0]}
    flow.release(loads[TPS[0]], 10, 100)  # 50: at its low watermark
    assert flow.decide({TPS[0]}) == set()


def test_global_limit_pauses_everything_until_global_low_watermark() -> None:
    flow = FlowControl(max_messages=100, max_bytes=10**9, resume_ratio=0.5)
    loads = {tp: flow.assign(tp) for tp in TPS[:2]}
    flow.revoke(TPS[1])  # its share goes back to the others ...
    flow.acquire(loads[TPS[1]], 100, 1)  # ... but late work still counts globally
    assert flow.decide(set()) == {TPS[0]}
    flow.release(loads[TPS[1]], 49, 1)  # 51 > 50
    assert flow.decide({TPS[0]}) == {TPS[0]}
    flow.release(loads[TPS[1]], 1, 0)
    assert flow.decide({TPS[0]}) == set()


def test_bytes_limit_counts_like_messages() -> None:
    flow = FlowControl(max_messages=10**6, max_bytes=1_000, resume_ratio=0.5)
    load = flow.assign(TPS[0])
    flow.assign(TPS[1])
    flow.acquire(load, 1, 600)  # share of bytes = 500, global over its low watermark
    assert flow.decide(set()) == {TPS[0]}
    assert flow.capacity() == 10**6 - 1


ops = st.lists(
    st.tuples(st.sampled_from(range(len(TPS))), st.integers(-60, 60), st.integers(0, 5_000)),
    max_size=80,
)


@given(ops, st.floats(0.1, 0.9))
def test_invariants_under_random_load(steps: list[tuple[int, int, int]], ratio: float) -> None:
    max_messages, max_bytes = 200, 100_000
    flow = FlowControl(max_messages, max_bytes, ratio)
    loads = {tp: flow.assign(tp) for tp in TPS}
    paused: set[TP] = set()
    for index, delta, size in steps:
        load = loads[TPS[index]]
        if delta >= 0:
            flow.acquire(load, delta, size)
        else:
            n = min(-delta, load.messages)
            flow.release(load, n, min(size, load.bytes))
        previous = paused
        paused = flow.decide(paused)
        assert paused <= set(TPS)
        assert flow.messages == sum(x.messages for x in loads.values())
        share = max_messages / len(TPS)
        if flow.messages >= max_messages or flow.bytes >= max_bytes:
            assert paused == set(TPS), "global limit pauses everything"
            continue
        share_b = max_bytes / len(TPS)
        pressure = flow.messages >= max_messages * ratio or flow.bytes >= max_bytes * ratio
        if not pressure and paused != set(TPS):
            assert paused == set(), "below the global low watermark nothing is paused"
        for tp, x in loads.items():
            if pressure and (x.messages >= share or x.bytes >= share_b):
                assert tp in paused, "under pressure a partition at its share is paused"
            elif tp not in previous and paused != set(TPS):
                assert tp not in paused, "a running partition under its share keeps running"
            if paused != set(TPS) and x.messages <= share * ratio and x.bytes <= share_b * ratio:
                assert tp not in paused, "below its low watermark it runs"
        assert flow.capacity() == max(0, max_messages - flow.messages)
