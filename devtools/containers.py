"""A single-node Kafka (KRaft) in a container, through testcontainers.

The tests use it when a Docker engine answers. The container runs with host
networking and listens on free ports of 127.0.0.1 only, so the address a
client is given is the address the broker advertises (no port mapping to get
wrong) and nothing listens on an external interface. It is configured the way
the `apache/kafka` image is (`KAFKA_*` variables), so the same code runs that
image or the local one built by `devtools.images.build_kafka_image`.
Needs a Linux engine (host networking). Blocking; for fixtures.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from devtools.kafka import metadata_round_trip
from devtools.ports import free_port

KAFKA_IMAGE = "apache/kafka:4.1.1"


def kraft_env(port: int, controller: int) -> dict[str, str]:
    """Single-node broker+controller settings on 127.0.0.1, replication 1."""
    return {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": f"1@127.0.0.1:{controller}",
        "KAFKA_LISTENERS": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://127.0.0.1:{port}",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "KAFKA_INTER_BROKER_LISTENER_NAME": "PLAINTEXT",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        "KAFKA_LOG_CLEANER_DEDUPE_BUFFER_SIZE": "2097152",
        "KAFKA_HEAP_OPTS": "-Xms128m -Xmx512m",
    }


@contextmanager
def kafka_container(image: str = KAFKA_IMAGE, timeout: float = 120.0) -> Iterator[str]:
    """Start the broker, yield its bootstrap address once a metadata round
    trip works, remove the container on exit (also when the body raises)."""
    from testcontainers.core.container import DockerContainer

    port, controller = free_port(), free_port()
    container = DockerContainer(image).with_kwargs(network_mode="host")
    for key, value in kraft_env(port, controller).items():
        container.with_env(key, value)
    with container:
        bootstrap = f"127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while not metadata_round_trip(bootstrap, timeout=5.0):
            wrapped = container.get_wrapped_container()
            wrapped.reload()
            if wrapped.status == "exited" or time.monotonic() > deadline:
                out, err = container.get_logs()
                raise RuntimeError(f"Kafka container {wrapped.status}, not ready:\n"
                                   f"{(out + err).decode(errors='replace')[-3000:]}")
            time.sleep(0.5)
        yield bootstrap
