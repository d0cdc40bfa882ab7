"""A run with a poison record in the middle, through the real service, in
each ordering mode: an invalid record and one the batch handler refuses are
each dead-lettered alone; every other event is stored once; the group
commits past all of them."""

from __future__ import annotations

import sqlite3
import tempfile
import uuid
from contextlib import closing
from pathlib import Path

import pytest

from devtools.harness import Service, committed_offsets, read_topic, wait_until
from tests.integration.gates.support import headers_of
from tests.support.kafka import NewTopicFactory, event_value, produce_values

pytestmark = pytest.mark.integration

INVALID_AT, FATAL_AT, COUNT = 7, 15, 40


@pytest.mark.parametrize("ordering", ["partition", "key", "unordered"])
async def test_a_poison_record_in_the_middle_of_a_run_fails_alone(
        ordering: str, kafka_bootstrap: str, new_topic: NewTopicFactory) -> None:
    topic = await new_topic(f"gates-run-{ordering}")
    dlq = await new_topic(f"gates-run-{ordering}-dlq")
    values: list[bytes] = []
    good: set[str] = set()
    for i in range(COUNT):
        if i == INVALID_AT:
            values.append(b'{"id": "half an event"')
            continue
        event_id, value = event_value(i, "fatal" if i == FATAL_AT else "ok")
        values.append(value)
        if i != FATAL_AT:
            good.add(event_id)
    # All produced before the service starts: they arrive as one run per key.
    offsets = await produce_values(kafka_bootstrap, topic, values, key=lambda i: b"k%d" % (i % 4))
    group = f"g-{uuid.uuid4().hex[:8]}"
    db = Path(tempfile.mkdtemp(prefix="gates-run-")) / "events.db"
    svc = Service(bootstrap_servers=kafka_bootstrap, topics=topic, dlq_topic=dlq,
                  group_id=group, ordering=ordering, sink_url=f"sqlite:///{db}",
                  handler="tests.integration.gates.handlers:store_unless_fatal",
                  commit_interval="0.2").start()
    try:
        async def all_committed() -> bool:
            return await committed_offsets(kafka_bootstrap, group, topic, 1) == {
                0: offsets[-1] + 1}

        await wait_until(all_committed, 90, "every offset committed", svc)
        assert svc.terminate() == 0
    finally:
        if svc.alive:
            svc.kill()
    letters = await read_topic(kafka_bootstrap, dlq, idle=1.0)
    by_offset = {int(headers_of(r)["dlq.original.offset"]): headers_of(r) for r in letters}
    assert sorted(by_offset) == [offsets[INVALID_AT], offsets[FATAL_AT]]
    assert by_offset[offsets[INVALID_AT]]["dlq.error.type"] == "InvalidEvent"
    assert by_offset[offsets[FATAL_AT]]["dlq.error.type"] == "FatalError"
    assert by_offset[offsets[FATAL_AT]]["dlq.attempts"] == "1"
    with closing(sqlite3.connect(db)) as conn:
        stored = [row[0] for row in conn.execute("SELECT id FROM events")]
    assert sorted(stored) == sorted(good)
