"""The schema id of a refused wire-format value reaches its dead letter
(header `dlq.schema.id`) and what `consumer dlq inspect` reads back."""

from __future__ import annotations

from consumer.formats.wire import frame
from consumer.gates.dlq import H_SCHEMA_ID, dead_letter_headers
from consumer.gates.dlq_tools import DeadLetter
from schemas import InvalidEvent
from tests.unit.gates.fakes import record


def test_a_refusal_naming_a_schema_id_puts_it_in_a_header() -> None:
    rec = record(3, value=frame(987_654, b"\x02"))
    refusal = InvalidEvent("unknown_schema", "schema id 987654 is not in the registry",
                           schema_id=987_654)
    headers = dead_letter_headers(rec, refusal, attempts=1, group="g", first_failure=0.0,
                                  last_failure=0.0)
    assert dict(headers)[H_SCHEMA_ID] == b"987654"
    letter = DeadLetter("events.dlq", 0, 7, 0, None, rec.value, tuple(headers))
    assert letter.schema_id == "987654"
    assert letter.error_message.startswith("unknown_schema: ")


def test_plain_json_refusals_carry_no_schema_id() -> None:
    rec = record(3, value=b"{}")
    headers = dead_letter_headers(rec, InvalidEvent("schema_violation", "id: Field required"),
                                  attempts=1, group="g", first_failure=0.0, last_failure=0.0)
    assert H_SCHEMA_ID not in dict(headers)
    assert DeadLetter("events.dlq", 0, 7, 0, None, b"{}", tuple(headers)).schema_id is None
