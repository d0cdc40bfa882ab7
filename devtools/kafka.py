"""A real single-node Apache Kafka broker (KRaft) run from Maven jars.

For development (`python -m devtools kafka up|down`, `make run`) and for the
integration tests when no `KAFKA_BOOTSTRAP_SERVERS` is given and no Docker engine
answers. The jars are resolved once into `.cache/kafka/libs` and reused.

Everything here is blocking: callers are fixtures, the CLI and `make`, never
the service's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from consumer.security import PLAINTEXT, KafkaSecurity
from devtools.ports import free_port, port_open, project_root, wait_port_closed

POM = Path(__file__).with_name("kafka-pom.xml")
#: The admin command-line tools (AclCommand), resolved into their own folder so
#: the broker's jar set stays as it is.
TOOLS_POM = Path(__file__).with_name("kafka-tools-pom.xml")
_LOG4J = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
"""


def cache_dir() -> Path:
    return Path(os.environ.get("CONSUMER_CACHE_DIR", project_root() / ".cache"))


def background_state() -> Path:
    """Where `python -m devtools kafka up` records the broker it left running."""
    return cache_dir() / "kafka" / "run" / "state.json"


def running_bootstrap() -> str | None:
    """The address of a broker started by `kafka up` that is still alive, if any."""
    state = background_state()
    if not state.exists():
        return None
    info = json.loads(state.read_text())
    try:
        os.kill(int(info["pid"]), 0)
    except ProcessLookupError:
        state.unlink()
        return None
    return str(info["bootstrap"])


def ensure_jars(cache: Path | None = None, *, pom: Path = POM, folder: str = "libs") -> Path:
    """Resolve the jars `pom` names (default: the broker's) with Maven into
    `<cache>/kafka/<folder>` unless a complete copy is cached.

    Returns the folder holding the jars. Raises `RuntimeError` with Maven's
    output when resolution fails.
    """
    cache = cache or cache_dir()
    libs = cache / "kafka" / folder
    marker = libs / ".complete"
    if marker.exists() and marker.read_text() == pom.read_text():
        return libs
    if libs.exists():
        shutil.rmtree(libs)
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError("Maven (mvn) is not installed; run `make setup` first")
    proc = subprocess.run(
        [
            mvn, "-q", "-B", "-f", str(pom),
            f"-Dmaven.repo.local={cache / 'm2'}",
            "dependency:copy-dependencies", "-DincludeScope=runtime",
            f"-DoutputDirectory={libs}",
        ],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"resolving Kafka jars failed:\n{proc.stdout}\n{proc.stderr}")
    marker.write_text(pom.read_text())
    return libs


def ensure_tools() -> Path:
    """The folder of the Kafka admin tools' jars (resolved on first use)."""
    return ensure_jars(pom=TOOLS_POM, folder="tools")


@dataclass
class LocalKafka:
    """One broker+controller on 127.0.0.1. `start()` returns once a metadata
    round trip succeeds; `stop()` sends SIGTERM, then SIGKILL after `grace`.

    `kill()` then `start()` is a broker crash and restart: the same ports and
    data directory, so clients reconnect to the same address and the logs are
    recovered from disk.

    `host` moves the client listener to another local address (e.g. one pods
    reach); the controller stays on loopback."""

    port: int = 0
    host: str = "127.0.0.1"
    data_dir: Path | None = None
    controller_port: int = 0
    heap: str = "512m"
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _owns_data: bool = field(default=False, init=False)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 90.0, detach: bool = False) -> str:
        libs = ensure_jars()
        java = shutil.which("java")
        if java is None:
            raise RuntimeError("Java is not installed; run `make setup` first")
        self.port = self.port or free_port()
        self.controller_port = self.controller_port or free_port()
        controller = self.controller_port
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="consumer-kafka-"))
            self._owns_data = True
        self.data_dir.mkdir(parents=True, exist_ok=True)
        props = self.data_dir / "server.properties"
        props.write_text(self._properties(controller))
        log4j = self.data_dir / "log4j2.properties"
        log4j.write_text(_LOG4J.format(log=self.data_dir / "broker.log"))
        classpath = f"{libs}/*"
        # A restart on the same data keeps its cluster id: formatting again
        # with a new one would fail.
        if not (self.data_dir / "log" / "meta.properties").exists():
            self._format(java, classpath, props)
        with (self.data_dir / "stdout.log").open("ab") as out:
            self._proc = subprocess.Popen(
                [java, "-Xms128m", f"-Xmx{self.heap}", "-XX:+UseSerialGC",
                 "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
                 f"-Dlog4j2.configurationFile={log4j}",
                 "-cp", classpath, "kafka.Kafka", str(props)],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=detach,
            )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self.bootstrap

    def _format(self, java: str, classpath: str, props: Path) -> None:
        subprocess.run(
            [java, "-cp", classpath, "kafka.tools.StorageTool", "format",
             "-t", _cluster_id(), "-c", str(props), "--ignore-formatted",
             *self._format_args()],
            capture_output=True, check=True,
            env={**os.environ, "KAFKA_LOG4J_OPTS": ""},
        )

    def _properties(self, controller: int) -> str:
        """server.properties; `data_dir` exists."""
        assert self.data_dir is not None
        return _server_properties(self.port, controller, self.data_dir / "log", self.host)

    def _format_args(self) -> list[str]:
        """Extra `kafka-storage format` arguments (e.g. SCRAM users)."""
        return []

    def _ready(self) -> bool:
        return metadata_round_trip(self.bootstrap, timeout=5.0)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(f"Kafka exited with {self._proc.returncode}:\n{self.log_tail()}")
            if port_open(self.port, self.host) and self._ready():
                return
            time.sleep(0.25)
        raise TimeoutError(f"Kafka not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        if self.data_dir is None:
            return ""
        text = ""
        for name in ("stdout.log", "broker.log"):
            path = self.data_dir / name
            if path.exists():
                text += "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return text

    def kill(self) -> None:
        """SIGKILL the broker (a crash: no clean shutdown) and wait until its
        ports are free; the data directory is kept for `start()`."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None
        for port, host in ((self.port, self.host), (self.controller_port, "127.0.0.1")):
            if port:
                wait_port_closed(port, timeout=15.0, host=host)

    def stop(self, grace: float = 15.0) -> None:
        if self._proc is not None and self._proc.poll() is None:
            stop_process(self._proc.pid, grace)
            self._proc.wait()
        if self.port:
            wait_port_closed(self.port, timeout=grace, host=self.host)
        self._proc = None
        if self._owns_data and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def stop_process(pid: int, grace: float) -> None:
    """SIGTERM, then SIGKILL if the process outlives `grace` seconds."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        # Not our child (a broker started by an earlier `dev kafka up`).
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return waited == 0


def metadata_round_trip(bootstrap: str, timeout: float,
                        security: KafkaSecurity = PLAINTEXT) -> bool:
    """True when a client can fetch cluster metadata from `bootstrap`."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    async def probe() -> bool:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000),
            **security.options(),
        )
        try:
            await asyncio.wait_for(admin.start(), timeout)
            await asyncio.wait_for(admin.list_topics(), timeout)
        except (KafkaError, OSError, TimeoutError):
            return False
        finally:
            await admin.close()
        return True

    return asyncio.run(probe())


async def create_topics(bootstrap: str, topics: Mapping[str, int], *,
                        security: KafkaSecurity = PLAINTEXT) -> None:
    """Create each topic (name → partition count, replication 1) unless it
    exists already. For development, demos, benchmarks and tests."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **security.options())
    await admin.start()
    try:
        for name, partitions in topics.items():
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


def _cluster_id() -> str:
    # KRaft wants a base64 UUID of 22 characters; one starting with "-" would
    # be read as an option by the storage tool.
    import base64

    while True:
        cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster.startswith("-"):
            return cluster


def _server_properties(port: int, controller: int, log_dir: Path,
                       host: str = "127.0.0.1") -> str:
    return f"""\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller}
listeners=PLAINTEXT://{host}:{port},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=PLAINTEXT://{host}:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={log_dir}
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
log.cleaner.dedupe.buffer.size=2097152
auto.create.topics.enable=true
num.network.threads=2
num.io.threads=4
log.flush.interval.messages=9223372036854775807
"""
