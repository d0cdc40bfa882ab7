"""What the screen says: states, the readiness body of an instance that is
not ready, unreachable instances, and no colour under NO_COLOR."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from consumer.top import render
from consumer.top.model import InstanceView, PartitionRow, Probe, Rates
from tests.ansi import coloured

OK = Probe(200, '{"ok": true}')


def rates(**overrides: float) -> Rates:
    values = {"fetched": 50.0, "dead_letters": 1.0, "retries": 0.0, "committed": 50.0,
              "rows_written": 48.0, "sink_errors": 0.0, "commit_failures": 0.0,
              "dlq_send_failures": 0.0}
    values.update(overrides)
    return Rates(outcomes={"ok": 48.0, "dead_lettered": 1.0, "invalid": 1.0},
                 p99_processing=0.004, p99_flush=0.02, p99_loop_lag=0.003, **values)


VIEWS = [
    InstanceView("http://a:8080", OK, OK, rates=rates(), in_flight=12,
                 in_flight_limit=1000, in_flight_bytes=3 * 2**20, paused=0, assigned=3,
                 lag=40, max_lag_seconds=2.5,
                 dead_letter_reasons={"InvalidEvent": 12.0, "TimeoutError": 30.0},
                 partitions=(PartitionRow("http://a:8080", "events", 0, 40, 2.5, 1200,
                                          paused=True, in_flight=7, last_commit_age=3.5),)),
    InstanceView("http://b:8080", OK,
                 Probe(503, '{"ok": false, "reason": "sink sqlite failing: disk full"}'),
                 rates=rates(sink_errors=2.0), in_flight=1000, in_flight_limit=1000,
                 paused=3, assigned=3),
    InstanceView("http://c:8080", Probe(None, error="unreachable (Connection refused)"),
                 Probe(None, error="unreachable (Connection refused)"),
                 error="unreachable (Connection refused)"),
]


def text(views: list[InstanceView], **console: object) -> str:
    out = io.StringIO()
    Console(file=out, width=200, **console).print(  # type: ignore[arg-type]
        render.screen(views, header="top", partition_rows=10))
    return out.getvalue()


def test_states_rates_and_reasons() -> None:
    shown = text(VIEWS)
    # The first line naming each instance: its row in the instances table.
    lines = {line.split()[0]: line for line in reversed(shown.splitlines()) if line.split()}
    assert "ready" in lines["http://a:8080"]
    assert "50" in lines["http://a:8080"]  # done/s
    assert "12/1k" in lines["http://a:8080"]
    assert "not ready" in lines["http://b:8080"]
    assert "unreachable" in lines["http://c:8080"]
    # Why b is not ready, in the service's words; why c shows nothing.
    assert 'http://b:8080 /readyz: HTTP 503 {"ok": false, "reason": "sink sqlite failing: ' \
           'disk full"}' in shown
    assert "http://c:8080: unreachable (Connection refused)" in shown
    assert "2.0%" in lines["http://a:8080"]  # dead letters of fetched
    assert "http://a:8080 dead letters, last minute: TimeoutError 30, InvalidEvent 12" in shown
    once = InstanceView("http://a", OK, OK, dead_letter_reasons={"InvalidEvent": 1.0},
                        reasons_over=1.0)
    assert "http://a dead letters, last 1.0 s: InvalidEvent 1" in text([once])
    assert "partitions furthest behind" in shown
    assert re.search(r"http://a:8080\s+events\s+0\s+40\s+2\.5 s\s+1200\s+paused\s+7\s+"
                     r"3\.5 s ago", shown)


def test_totals_since_start_are_exact_and_only_asked_for() -> None:
    counted = InstanceView("http://a:8080", OK, OK, totals={
        "ok": 123_456.0, "dead_lettered": 2.0, "invalid": 0.0, "fetched": 123_458.0})
    out = io.StringIO()
    Console(file=out, width=200).print(render.screen([counted], header="top", partition_rows=0,
                                                     with_totals=True))
    assert ("http://a:8080 since start: ok 123456, dead-lettered 2, invalid 0, fetched 123458"
            in out.getvalue())
    assert "since start" not in text([counted])  # the live view has no room for it


def test_first_frame_shows_no_rates_yet() -> None:
    first = InstanceView("http://a:8080", OK, OK, in_flight=0, in_flight_limit=10)
    row = next(line for line in text([first]).splitlines() if "http://a:8080" in line)
    assert row.split()[1:4] == ["ready", "-", "-"]


def test_draining_and_the_readiness_reasons_in_the_services_words() -> None:
    stopping = InstanceView("http://a", OK, Probe(503, '{"ok": false, "reasons": ["draining: '
                                                       'stopping", "sink sqlite failing"]}'))
    assert render.state(stopping).plain == "draining"
    assert "http://a /readyz: HTTP 503 draining: stopping; sink sqlite failing" in text(
        [stopping])


def test_breaker_and_unhealthy_override_ready() -> None:
    tripped = InstanceView("http://a", OK, OK, breaker_open=True)
    sick = InstanceView("http://b", Probe(503, '{"ok": false}'), OK)
    assert render.state(tripped).plain == "breaker open"
    assert render.state(sick).plain == "unhealthy"


@pytest.mark.parametrize(("value", "shown"), [(None, "-"), (0, "0"), (950, "950"),
                                              (12_345, "12.3k"), (2.5e6, "2.5M"), (0.25, "0.2")])
def test_number(value: float | None, shown: str) -> None:
    assert render.number(value) == shown


@pytest.mark.parametrize(("value", "shown"), [(None, "-"), (0, "0 s"), (0.0004, "400 µs"),
                                              (0.004, "4 ms"), (2.5, "2.5 s"),
                                              (600, "10.0 min"), (7200, "2.0 h")])
def test_seconds(value: float | None, shown: str) -> None:
    assert render.seconds(value) == shown


def test_colour_on_a_terminal_and_none_under_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert coloured(text(VIEWS, force_terminal=True, color_system="standard"))
    monkeypatch.setenv("NO_COLOR", "1")  # read by rich's Console, as the command builds it
    plain = text(VIEWS, force_terminal=True, color_system="standard")
    assert not coloured(plain), repr(plain[:300])
    assert "not ready" in plain
