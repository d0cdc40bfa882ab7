"""Last of the node tests: the node comes down and the host is as it was."""

from __future__ import annotations

import pytest

from devtools.kafka import LocalKafka
from devtools.postgres import LocalPostgres
from tests.chart.node.host import SYSCTLS, read_sysctls
from tests.chart.node.node import Node

pytestmark = pytest.mark.integration


def test_teardown_puts_the_host_back(node: Node, node_kafka: LocalKafka,
                                     node_pg: LocalPostgres) -> None:
    recorded = node.host.record["sysctls"]
    assert "vm.overcommit_memory" in recorded
    assert "kernel.panic" in recorded
    node_kafka.stop()
    node_pg.stop()
    node.stop()  # the session fixture's own stop() is then a no-op
    assert node.host.changes() == {}
    now = read_sysctls()
    assert {k: now.get(k) for k in SYSCTLS if k in recorded} == recorded
