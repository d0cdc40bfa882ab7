"""Running one contender in its own process and measuring it: msg/s, CPU
(the whole process, and per message over the measured span), peak RSS; for
`consumer run`, the latency of /metrics and /healthz while it works.

Nothing here asserts: the figures are printed, the counts verified by the
caller (rows in the contender's database, offsets committed by its group).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from devtools.ports import free_port, project_root

_TICK = os.sysconf("SC_CLK_TCK")
_RESULT = re.compile(r'\{"messages".*\}')
_MESSAGES = re.compile(r"^consumer_messages_total\{[^}]*\} ([0-9.e+]+)$", re.MULTILINE)


@dataclass
class Result:
    name: str
    messages: int
    seconds: float
    cpu_active: float  # CPU seconds over the measured span
    cpu_total: float = 0.0  # the whole process, start-up included
    rss_mib: float = 0.0
    verified: str = ""
    latency: dict[str, list[float]] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    @property
    def cpu_us(self) -> float:
        return self.cpu_active / self.messages * 1e6 if self.messages else 0.0

    def line(self) -> str:
        return (f"{self.name:<30} {self.rate:>9,.0f} {self.messages:>10,} {self.seconds:>8.1f} "
                f"{self.cpu_total:>7.1f} {self.cpu_us:>8.1f} {self.rss_mib:>9.0f}  {self.verified}")


HEADER = (f"{'contender':<30} {'msg/s':>9} {'messages':>10} {'seconds':>8} {'CPU s':>7} "
          f"{'µs/msg':>8} {'peak RSS':>9}  verified")


def _cpu_of(pid: int) -> float:
    """utime + stime of a running process, seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def tree_cpu(pid: int | None) -> float:
    """CPU seconds of a process and all its children, live and exited (a
    server's backends come and go): 0.0 when unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    total = sum(int(f) for f in fields[11:15]) / _TICK  # utime stime cutime cstime
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        with contextlib.suppress(OSError):
            total += _cpu_of(int(child))
    return total


class PeakRss:
    """Peak RSS (MiB) of a running child: its `VmHWM`, read every 20 ms until
    it exits. Not the rusage of the reaped child: Linux carries the parent's
    high-water mark over fork and exec, so every child of a large parent
    (`make bench` runs the validation benchmark in-process first) would
    report at least the parent's size."""

    def __init__(self, pid: int) -> None:
        self._path = Path(f"/proc/{pid}/status")
        self.mib = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._done.is_set():
            try:
                text = self._path.read_text()
            except OSError:
                return  # reaped
            for line in text.splitlines():
                if line.startswith("VmHWM:"):
                    self.mib = max(self.mib, int(line.split()[1]) / 1024)
            self._done.wait(0.02)

    def stop(self) -> float:
        self._done.set()
        self._thread.join()
        return self.mib


def _reap(proc: subprocess.Popen[bytes], peak: PeakRss) -> tuple[int, float, float]:
    """Wait for `proc`; (exit code, CPU seconds, peak RSS MiB)."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_utime + usage.ru_stime, peak.stop()


def child(name: str, argv: list[str], env: dict[str, str] | None = None,
          limit: float = 600.0) -> Result:
    """A contender that prints one JSON line (messages, seconds, cpu) and exits."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, env=env, cwd=project_root())
    peak = PeakRss(proc.pid)
    assert proc.stdout is not None
    timer = threading.Timer(limit, proc.kill)
    timer.start()
    try:
        out = proc.stdout.read().decode()
    finally:
        timer.cancel()
    code, cpu, rss = _reap(proc, peak)
    # Terminal control codes may share the line (faust's spinner).
    found = _RESULT.findall(out)
    if not found:
        raise RuntimeError(f"{name} failed with {code} and no result: {out[-2000:]}")
    data = json.loads(found[-1])
    return Result(name, data["messages"], data["seconds"], data.get("cpu", 0.0), cpu, rss)


def _get(url: str) -> tuple[float, str]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = resp.read().decode()
    return time.perf_counter() - started, body


def service(name: str, env: dict[str, str], count: int, *, window: float | None = None,
            limit: float = 600.0) -> Result:
    """`consumer run` as deployed, until `count` messages are done (or for
    `window` seconds after the first one), then SIGTERM: it drains, commits
    and exits. /metrics and /healthz are each requested every 50 ms meanwhile;
    the span is from the first done message to the last."""
    port = free_port()
    full = {k: v for k, v in os.environ.items() if not k.startswith("CONSUMER_")}
    full.update({"CONSUMER_HTTP_PORT": str(port), "CONSUMER_HTTP_HOST": "127.0.0.1",
                 "CONSUMER_LOG_LEVEL": "WARNING", **env})
    proc = subprocess.Popen([sys.executable, "-m", "consumer.cli", "run"], env=full,
                            cwd=project_root())
    peak = PeakRss(proc.pid)
    # The control: an idle Python HTTP server on the same machine, asked at
    # the same moments. Its latency is what the machine alone costs (a
    # process waiting for a core), not the service's event loop.
    control_port = free_port()
    control = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                                "-d", tempfile.gettempdir(), str(control_port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics: list[float] = []
    health: list[float] = []
    idle: list[float] = []
    first: tuple[float, float, float] | None = None  # (time, done, cpu)
    last = (0.0, 0.0, 0.0)
    deadline = time.monotonic() + limit
    try:
        while True:
            try:
                took, body = _get(f"http://127.0.0.1:{port}/metrics")
                took_h, _ = _get(f"http://127.0.0.1:{port}/healthz")
            except OSError:
                took = took_h = -1.0
                body = ""
            now = time.monotonic()
            done = sum(float(v) for v in _MESSAGES.findall(body))
            if done and first is None:
                first = (now, done, _cpu_of(proc.pid))
            if first is not None and took >= 0:
                metrics.append(took)
                health.append(took_h)
                with contextlib.suppress(OSError):
                    idle.append(_get(f"http://127.0.0.1:{control_port}/")[0])
            if done > last[1]:
                last = (now, done, _cpu_of(proc.pid))
            if done >= count or (first is not None and window and now - first[0] >= window):
                break
            if proc.poll() is not None:
                raise RuntimeError(f"{name}: service exited with {proc.returncode}")
            if now > deadline:
                raise TimeoutError(f"{name}: only {done:.0f} of {count} done in time")
            time.sleep(0.05)
    finally:
        control.terminate()
        control.wait()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        killer = threading.Timer(90, proc.kill)
        killer.start()
        _, cpu, rss = _reap(proc, peak)
        killer.cancel()
    assert first is not None
    result = Result(name, int(last[1] - first[1]), max(last[0] - first[0], 1e-3),
                    last[2] - first[2], cpu, rss)
    result.latency = {"/metrics": metrics, "/healthz": health, "control (idle server)": idle}
    return result


def percentiles(samples: list[float]) -> str:
    if len(samples) < 2:
        return "no samples"
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return (f"p50 {cuts[49] * 1e3:.0f} ms, p99 {cuts[98] * 1e3:.0f} ms, "
            f"max {max(samples) * 1e3:.0f} ms ({len(samples)} samples)")


def p99(samples: list[float]) -> float:
    if len(samples) < 2:
        return float("nan")
    return statistics.quantiles(samples, n=100, method="inclusive")[98]
