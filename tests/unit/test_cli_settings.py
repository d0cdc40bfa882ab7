"""Bad settings: `consumer run` exits 2 naming the setting, before any I/O."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("CONSUMER_MAX_IN_FLIGHT", "-1"),
        ("CONSUMER_ORDERING", "sideways"),
        ("CONSUMER_HANDLER", "no_such_module:handle"),
        ("CONSUMER_SINK_URL", "ftp://nowhere"),
        ("CONSUMER_MIDDLEWARE", "no_such_module:Middleware"),
    ],
)
def test_bad_setting_exits_2_naming_it(var: str, value: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSUMER_")}
    # Nothing listens there: reaching the exit code proves nothing was dialled.
    env.update({"CONSUMER_BOOTSTRAP_SERVERS": "127.0.0.1:9", var: value})
    proc = subprocess.run([sys.executable, "-m", "consumer.cli", "run"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    assert var in proc.stderr
    assert "Traceback" not in proc.stderr
