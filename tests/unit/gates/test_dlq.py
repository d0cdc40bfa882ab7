"""Dead-letter headers, the inspect/replay selection and replay headers."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from consumer.gates.dlq import (
    MAX_MESSAGE_BYTES,
    MAX_STACK_BYTES,
    Letter,
    dead_letter_headers,
)
from consumer.gates.dlq_tools import DeadLetter, Selection, replay_headers, replay_target
from tests.unit.gates.fakes import record


def _raise(exc: Exception) -> None:
    raise exc


def _raised(exc: Exception) -> Exception:
    try:
        _raise(exc)
    except Exception as caught:  # noqa: BLE001 - we want its traceback
        return caught
    raise AssertionError("unreachable")


def test_headers_per_contract_and_truncated() -> None:
    rec = record(5, value=b"v", headers=[("trace", b"t"), ("dlq.error.type", b"Old"),
                                         ("dlq.replay.count", b"2")])
    exc = _raised(ValueError("x" * 5000))
    headers = dead_letter_headers(rec, exc, attempts=3, group="g", first_failure=0.0,
                                  last_failure=1.5)
    names = [k for k, _ in headers]
    assert names[:2] == ["trace", "dlq.replay.count"]  # kept; the stale dlq.* one dropped
    h = dict(headers)
    assert h["dlq.original.topic"] == b"t"
    assert h["dlq.original.partition"] == b"0"
    assert h["dlq.original.offset"] == b"5"
    assert h["dlq.original.timestamp"] == b"1700000000005"
    assert h["dlq.error.type"] == b"ValueError"
    assert len(h["dlq.error.message"] or b"") == MAX_MESSAGE_BYTES
    assert h["dlq.attempts"] == b"3"
    assert h["dlq.consumer.group"] == b"g"
    stack = h["dlq.error.stack"] or b""
    assert len(stack) <= MAX_STACK_BYTES
    assert stack.endswith(b"x\n")  # the tail (where it was raised) is kept
    assert h["dlq.first_failure"] == b"1970-01-01T00:00:00.000+00:00"
    assert h["dlq.last_failure"] == b"1970-01-01T00:00:01.500+00:00"


def letter(offset: int, error: str = "FatalError", ts: int = 1_767_225_600_000,
           replays: int | None = None) -> DeadLetter:
    extra = {} if replays is None else {"dlq.replay.count": str(replays).encode()}
    headers = [("dlq.original.topic", b"orders"), ("dlq.original.partition", b"2"),
               ("dlq.original.offset", b"41"), ("dlq.error.type", error.encode()),
               ("dlq.error.message", b"boom"), ("dlq.attempts", b"5"), ("app", b"a"),
               *extra.items()]
    return DeadLetter("orders.dlq", 0, offset, ts, b"key", b"value", tuple(headers))


def test_dead_letter_fields() -> None:
    dl = letter(7, replays=2)
    assert (dl.original_topic, dl.original_partition, dl.original_offset) == ("orders", 2, 41)
    assert (dl.error_type, dl.error_message, dl.attempts) == ("FatalError", "boom", 5)
    assert dl.replay_count == 2
    assert dl.time == datetime(2026, 1, 1, tzinfo=UTC)


def test_selection_bounds_all_apply() -> None:
    day = datetime(2026, 1, 1, tzinfo=UTC)
    assert Selection().matches(letter(1))
    assert Selection(error_types=frozenset({"FatalError"})).matches(letter(1))
    assert not Selection(error_types=frozenset({"InvalidEvent"})).matches(letter(1))
    assert Selection(since=day, until=day).matches(letter(1))
    assert not Selection(since=datetime(2026, 1, 2, tzinfo=UTC)).matches(letter(1))
    assert not Selection(until=datetime(2025, 12, 31, tzinfo=UTC)).matches(letter(1))
    assert Selection(from_offset=3, to_offset=3).matches(letter(3))
    assert not Selection(from_offset=4).matches(letter(3))
    assert not Selection(to_offset=2).matches(letter(3))
    assert not Selection(partition=1).matches(letter(3))


def test_replay_headers_count_up_and_drop_failure_headers() -> None:
    first = replay_headers(letter(1))
    assert first == [("app", b"a"), ("dlq.replay.count", b"1")]
    again = replay_headers(letter(1, replays=1))
    assert again[-1] == ("dlq.replay.count", b"2")
    assert replay_target(letter(1), None) == "orders"
    assert replay_target(letter(1), "elsewhere") == "elsewhere"
    orphan = DeadLetter("x.dlq", 0, 0, 0, None, None, ())
    assert replay_target(orphan, None) is None


def test_a_header_without_value_is_kept_without_value() -> None:
    rec = record(1, value=b"v", headers=[("flag", None), ("trace", b"t")])  # type: ignore[list-item]
    headers = dead_letter_headers(rec, _raised(ValueError("bad")), attempts=1, group="g",
                                  first_failure=0.0, last_failure=0.0)
    assert headers[:2] == [("flag", None), ("trace", b"t")]


def test_refused_letters_shrink_stack_value_key_then_own_headers() -> None:
    rec = record(9, value=b"v" * 10, headers=[("trace", b"t")])
    headers = dead_letter_headers(rec, _raised(ValueError("bad")), attempts=1, group="g",
                                  first_failure=0.0, last_failure=0.0)
    letter = Letter(b"k", rec.value, tuple(headers))
    steps = []
    while (smaller := letter.reduced("too_large")) is not None:
        letter = smaller.sendable()
        steps.append(letter)
    assert "dlq.error.stack" not in dict(steps[0].headers)
    assert steps[0].value == rec.value
    assert steps[1].value is None
    assert dict(steps[1].headers)["dlq.value.dropped"] == b"too_large"
    assert steps[2].key is None
    assert dict(steps[2].headers)["dlq.key.dropped"] == b"too_large"
    last = dict(steps[3].headers)
    assert "trace" not in last
    assert last["dlq.headers.dropped"] == b"1"
    assert last["dlq.original.offset"] == b"9"  # where to find the original
    assert len(steps) == 4
    # Key and value both gone: a client refuses that, so an empty value
    # stands in, not marked null (the value was dropped, not null).
    assert steps[3].value == b""
    assert "dlq.value.null" not in last


def test_a_keyless_tombstone_is_sent_with_an_empty_value_marked_null() -> None:
    letter = Letter(None, None, (("dlq.original.offset", b"3"),)).sendable()
    assert letter.key is None
    assert letter.value == b""
    assert dict(letter.headers)["dlq.value.null"] == b"true"
    assert Letter(b"k", None, ()).sendable() == Letter(b"k", None, ())


@given(st.none() | st.binary(max_size=5), st.none() | st.binary(max_size=5),
       st.lists(st.tuples(st.sampled_from(["a", "dlq.error.stack", "dlq.replay.count", "b"]),
                          st.none() | st.binary(max_size=3)), max_size=5))
def test_reduction_always_ends_and_every_form_is_sendable(
        key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes | None]]) -> None:
    letter: Letter | None = Letter(key, value, tuple(headers)).sendable()
    for _ in range(10):
        assert letter is not None
        assert letter.key is not None or letter.value is not None
        letter = letter.reduced("refused")
        if letter is None:
            break
        letter = letter.sendable()
    assert letter is None
