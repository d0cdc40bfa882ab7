"""`validate_many` is `validate` over a run: same events, same refusals, in order."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from schemas import InvalidEvent, validate, validate_many
from schemas.samples import invalid_samples, sample_event

VALUES = [orjson.dumps(sample_event(i)) for i in range(4)] + [raw for _, raw in invalid_samples()]
values = st.sampled_from(VALUES) | st.binary(max_size=64) | st.none()




@given(st.lists(values, max_size=30), st.booleans(), st.sampled_from([16, 400, 1 << 20]))
def test_matches_validate_value_by_value(raws: list[bytes | None], allow_unknown: bool,
                                         max_bytes: int) -> None:
    many = validate_many(raws, allow_unknown=allow_unknown, max_bytes=max_bytes)
    single: list[object] = []
    for raw in raws:
        try:
            single.append(validate(raw, allow_unknown=allow_unknown, max_bytes=max_bytes))
        except InvalidEvent as exc:
            single.append((exc.reason, exc.detail))
    assert [(r.reason, r.detail) if isinstance(r, InvalidEvent) else r for r in many] == single
