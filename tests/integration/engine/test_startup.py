"""A dependency that is down at start-up: a clear line, exit 1, nothing leaked."""

from __future__ import annotations

import pytest

from devtools.harness import Service
from devtools.ports import free_port

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("bootstrap", "sink"),
    [
        (None, f"postgresql://nobody@127.0.0.1:{free_port()}/nothing"),  # database down
        (f"127.0.0.1:{free_port()}", "none"),  # broker down
    ],
)
def test_unreachable_dependency_at_start_exits_1_with_a_clear_line(
    kafka_bootstrap: str, bootstrap: str | None, sink: str
) -> None:
    svc = Service(bootstrap_servers=bootstrap or kafka_bootstrap, topics="startup",
                  sink_url=sink, log_level="INFO").start()
    assert svc.proc is not None
    assert svc.proc.wait(60) == 1
    log = svc.log_tail(20_000)
    assert "cannot run" in log
    assert "Traceback" not in log
    assert "Unclosed" not in log
