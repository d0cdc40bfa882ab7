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


SECRET = "never-Printed-42"


@pytest.mark.parametrize(
    ("command", "env", "named"),
    [
        (["run"], {"CONSUMER_SASL_MECHANISM": "SCRAM-SHA-512",
                   "CONSUMER_SASL_PASSWORD": SECRET}, "CONSUMER_SASL_MECHANISM"),
        (["run"], {"CONSUMER_SECURITY_PROTOCOL": "SASL_SSL",
                   "CONSUMER_SASL_MECHANISM": "SCRAM-SHA-512", "CONSUMER_SASL_USERNAME": "svc",
                   "CONSUMER_SASL_PASSWORD": SECRET}, "CONSUMER_SSL_CAFILE"),
        (["run"], {"CONSUMER_SECURITY_PROTOCOL": "SSL",
                   "CONSUMER_SSL_CAFILE": __file__}, "CONSUMER_SSL_CAFILE"),  # not PEM
        (["run"], {"CONSUMER_SINK_URL": f"ftp://user:{SECRET}@host/x"}, "CONSUMER_SINK_URL"),
        # libpq's key=value form and a URL typo: no `://` to find the password by.
        (["run"], {"CONSUMER_SINK_URL": f"host=db user=u password={SECRET}"},
         "CONSUMER_SINK_URL"),
        (["run"], {"CONSUMER_SINK_URL": f"host=db password='{SECRET} x' dbname=e"},
         "CONSUMER_SINK_URL"),
        (["run"], {"CONSUMER_SINK_URL": f"postgresql:/u:{SECRET}@db/x"}, "CONSUMER_SINK_URL"),
        (["produce", "--topic", "t"], {"CONSUMER_SASL_PASSWORD_FILE": "/no/such/file"},
         "CONSUMER_SASL_PASSWORD_FILE"),
        (["dlq", "inspect"], {"CONSUMER_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                              "CONSUMER_SASL_PASSWORD": SECRET}, "CONSUMER_SASL_MECHANISM"),
    ],
)
def test_bad_security_setting_exits_2_naming_it_without_the_secret(
        command: list[str], env: dict[str, str], named: str) -> None:
    full = {k: v for k, v in os.environ.items() if not k.startswith("CONSUMER_")}
    full.update({"CONSUMER_BOOTSTRAP_SERVERS": "127.0.0.1:9", **env})
    proc = subprocess.run([sys.executable, "-m", "consumer.cli", *command], env=full,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    assert named in proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("env", "named", "topic"),
    [
        ({"CONSUMER_TOPICS": "events,audit", "CONSUMER_DLQ_TOPIC": "audit"},
         "CONSUMER_DLQ_TOPIC", "audit"),
        ({"CONSUMER_TOPICS": "events,events.dlq"}, "CONSUMER_DLQ_TOPIC", "events.dlq"),
        ({"CONSUMER_TOPICS": "events,orders", "CONSUMER_SINK_URL": "kafka://orders"},
         "CONSUMER_SINK_URL", "orders"),
    ],
)
def test_a_written_topic_that_is_also_consumed_exits_2_naming_it(
        env: dict[str, str], named: str, topic: str) -> None:
    """A dead-letter or sink topic that is also a source would cycle forever."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("CONSUMER_")}
    full.update({"CONSUMER_BOOTSTRAP_SERVERS": "127.0.0.1:9", **env})
    proc = subprocess.run([sys.executable, "-m", "consumer.cli", "run"], env=full,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    assert named in proc.stderr
    assert f"{topic!r} " in proc.stderr
    assert "CONSUMER_TOPICS" in proc.stderr
    assert "Traceback" not in proc.stderr
