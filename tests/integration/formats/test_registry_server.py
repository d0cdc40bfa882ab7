"""The test registry itself (devtools.registry): loopback only, the
Confluent-compatible API answering, and a halt and start that keeps its
port and its schemas."""

from __future__ import annotations

import json
import urllib.request

from devtools.registry import LocalSchemaRegistry
from tests.support.processes import listening

#: IPv4 loopback, also as the IPv4-mapped IPv6 address a JVM listens on.
LOOPBACK = {"127.0.0.1", "::ffff:7f00:1"}


def register(url: str, subject: str, schema: str) -> int:
    request = urllib.request.Request(
        f"{url}/subjects/{subject}/versions", data=json.dumps({"schema": schema}).encode(),
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return int(json.loads(resp.read())["id"])


def schema_of(url: str, schema_id: int) -> str:
    with urllib.request.urlopen(f"{url}/schemas/ids/{schema_id}", timeout=10) as resp:
        return str(json.loads(resp.read())["schema"])


def test_it_listens_on_loopback_only(schema_registry: LocalSchemaRegistry) -> None:
    assert schema_registry.pid is not None
    found = listening(schema_registry.pid)
    assert {addr for addr, _ in found} <= LOOPBACK
    assert schema_registry.port in {port for _, port in found}


def test_a_halt_and_start_keeps_its_port_and_its_schemas(
        own_registry: LocalSchemaRegistry) -> None:
    url = own_registry.url
    schema_id = register(url, "kept-value", '{"type": "string"}')
    own_registry.halt()
    assert own_registry.pid is None
    assert own_registry.start() == url
    assert json.loads(schema_of(url, schema_id)) == {"type": "string"}
