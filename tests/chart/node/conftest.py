"""One real node per session (see node.py), the service image imported into
it, and a broker and a database that pods reach at the node address."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.docker import DockerEngine
from devtools.kafka import LocalKafka
from devtools.postgres import LocalPostgres
from tests.chart.helm import Helm
from tests.chart.node.host import NODE_IP, POD_CIDR
from tests.chart.node.images import save_image
from tests.chart.node.node import Node


@pytest.fixture(scope="session")
def node(tools: dict[str, Path], request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    cluster = Node(tools)
    cluster.start()
    print(f"\nnode Ready {cluster.started_in:.1f}s after start")
    failed = request.session.testsfailed
    try:
        yield cluster
    finally:
        if request.session.testsfailed > failed:
            kept = cluster.keep_logs(tmp_path_factory.mktemp("node-logs"))
            print(f"{cluster.logs()}\nevery log of the node: {kept}")
        cluster.stop()
        left = cluster.host.changes()
        assert not left, f"the host is not as it was: {left}"


@pytest.fixture(scope="session")
def node_image(node: Node, docker_engine: DockerEngine, service_image: str) -> str:
    """The service image, as the node's containerd knows it."""
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="consumer-image-") as tmp:
        node.import_image(save_image(docker_engine, service_image, Path(tmp) / "image.tar"))
    print(f"\n{service_image} imported into the node in {time.monotonic() - began:.1f}s")
    return service_image


@pytest.fixture(scope="session")
def node_kafka(node: Node) -> Iterator[LocalKafka]:
    """A broker whose listener is on the node address: pods reach it, nothing
    outside the machine can."""
    broker = LocalKafka(host=NODE_IP)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def node_pg(node: Node) -> Iterator[LocalPostgres]:
    server = LocalPostgres(host=NODE_IP, trusted=POD_CIDR)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def node_helm(helm: Helm, node: Node) -> Helm:
    return Helm(helm.binary, helm.home, node.kubeconfig)
