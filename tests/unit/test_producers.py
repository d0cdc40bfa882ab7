"""Starting a replacement producer never leaks it: a close that races the
start stops it again, and a failed start stops it too."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from consumer import producers


class FakeProducer:
    instances: ClassVar[list[FakeProducer]] = []

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.started = self.stopped = False
        FakeProducer.instances.append(self)

    async def start(self) -> None:
        if self.options.get("fail"):
            raise OSError("refused")
        self.started = True

    async def stop(self) -> None:
        self.stopped = True


@pytest.fixture(autouse=True)
def fake(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeProducer.instances = []
    monkeypatch.setattr(producers, "AIOKafkaProducer", FakeProducer)


async def test_a_started_producer_is_returned_running() -> None:
    producer = await producers.start_producer({}, 1.0, lambda: False)
    assert isinstance(producer, FakeProducer)
    assert producer.started
    assert not producer.stopped


async def test_closed_while_starting_stops_it_again() -> None:
    assert await producers.start_producer({}, 1.0, lambda: True) is None
    (made,) = FakeProducer.instances
    assert made.started
    assert made.stopped


async def test_a_failed_start_stops_it_and_raises() -> None:
    with pytest.raises(OSError, match="refused"):
        await producers.start_producer({"fail": True}, 1.0, lambda: False)
    assert FakeProducer.instances[0].stopped
