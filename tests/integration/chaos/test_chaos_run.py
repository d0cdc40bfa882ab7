"""A short `make chaos`: the same scenario and checks, fewer events and
faults — one of each kind (SIGKILL, SIGTERM, SIGSTOP past the session
timeout, a member joining and leaving, a broker crash and restart, a
PostgreSQL outage, a downstream answering 429 and 500) — in both delivery
modes; with `exactly_once` the per-key counters must end exact.

The run starts its own broker and PostgreSQL (it restarts them) and exits
non-zero on anything lost, doubled, wrongly dead-lettered or an exit its
fault does not explain; the final line is checked here as well.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from chaos.schedule import Kind
from devtools.ports import project_root

pytestmark = pytest.mark.integration

SEED = 20_261_129


@pytest.mark.parametrize("delivery", ["at_least_once", "exactly_once"])
def test_short_chaos_run_loses_nothing_and_explains_every_exit(tmp_path: Path,
                                                               delivery: str) -> None:
    argv = [sys.executable, "-m", "chaos", "--seed", str(SEED), "--faults", str(len(Kind)),
            "--duration", "50", "--rate", "150", "--warmup", "8", "--session-timeout", "6",
            "--drain-limit", "120", "--workdir", str(tmp_path), "--delivery", delivery]
    proc = subprocess.Popen(argv, cwd=project_root(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=270)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the run stops everything it started
        out, _ = proc.communicate(timeout=60)
        pytest.fail(f"the chaos run did not finish in time:\n{out[-6000:]}")
    print(out[-4000:])
    assert proc.returncode == 0, out[-6000:]
    line = out.strip().splitlines()[-1]
    figures = dict(re.findall(r"(\w+)=(\d+)", line))
    assert line.startswith("chaos: ")
    assert int(figures["faults"]) == len(Kind)
    assert int(figures["seed"]) == SEED
    assert figures["lost"] == figures["doubled"] == "0"
    assert int(figures["rows"]) == int(figures["valid"]) > 1_000
    assert int(figures["dlq"]) == int(figures["produced"]) - int(figures["valid"]) > 0
    assert f"delivery={delivery}" in line
    if delivery == "exactly_once":
        assert figures["overcount"] == figures["keys_off"] == "0"
    table = out[out.index(" # fault"):]
    assert all(f" {kind.value} " in table for kind in Kind)
