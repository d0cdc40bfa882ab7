"""`make run`: the service on embedded defaults against a local broker."""

from __future__ import annotations

import os
import subprocess
import sys

from consumer.commands.dev import running_bootstrap
from consumer.dev import kafka as local


def run_demo() -> int:
    """Start (or reuse) the local broker, then run the service in the foreground.
    Ctrl-C reaches the service, which drains and exits; the broker is stopped."""
    env = dict(os.environ)
    started: local.LocalKafka | None = None
    if "CONSUMER_BOOTSTRAP_SERVERS" not in env:
        bootstrap = running_bootstrap()
        if bootstrap is None:
            print("starting a local Kafka broker (KRaft, Maven jars) ...", flush=True)
            started = local.LocalKafka(port=9092)
            bootstrap = started.start()
        env["CONSUMER_BOOTSTRAP_SERVERS"] = bootstrap
    print(f"broker: {env['CONSUMER_BOOTSTRAP_SERVERS']}", flush=True)
    service = subprocess.Popen([sys.executable, "-m", "consumer.cli", "run"], env=env)
    try:
        return service.wait()
    except KeyboardInterrupt:
        # The terminal sent SIGINT to the whole group; let the service drain.
        return service.wait()
    finally:
        if started is not None:
            started.stop()
