"""open_sink chooses by URL and rejects what it cannot serve; Row conversion."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import orjson
import pytest
from pydantic import BaseModel

from consumer.config import Settings
from consumer.errors import ConfigError
from consumer.handlers.store import store
from consumer.sinks import open_sink
from consumer.sinks.base import Row
from tests.support.records import consumer_record


@pytest.mark.parametrize(("url", "name"), [
    ("postgresql://u@h/db", "postgres"), ("postgres://u@h/db", "postgres"),
    ("sqlite:///./consumer.db", "sqlite"), ("sqlite:////tmp/x.db", "sqlite"),
    ("kafka://out", "kafka"), ("none", "none"), ("https://h/ingest", "http"),
])
def test_chooses_by_scheme(url: str, name: str) -> None:
    assert open_sink(url, settings=Settings()).name == name


def test_sqlite_paths() -> None:
    assert open_sink("sqlite:///./consumer.db").path == "./consumer.db"  # type: ignore[attr-defined]
    assert open_sink("sqlite:////tmp/x.db").path == "/tmp/x.db"  # type: ignore[attr-defined]


@pytest.mark.parametrize("url", ["mysql://x", "sqlite://", "sqlite:///", "kafka://", "kafka://a/b", "http://",
                                 "", "file:///x"])
def test_bad_urls_name_the_setting(url: str) -> None:
    with pytest.raises(ConfigError, match="CONSUMER_SINK_URL"):
        open_sink(url)


class Data(BaseModel):
    sku: str
    qty: int


def test_row_from_event_with_model_data() -> None:
    event = SimpleNamespace(id="a", type="order.created", version=1,
                            occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
                            data=Data(sku="x", qty=2), source="shop")
    r = Row.from_event(event, consumer_record(42, topic="events", partition=3, value=b"{}"))
    assert r.data == {"sku": "x", "qty": 2}
    assert orjson.loads(r.data_json) == r.data
    assert (r.topic, r.partition, r.offset, r.key) == ("events", 3, 42, b"k")
    assert r.envelope()["source"] == "shop"
    assert r.size() > len(r.data_json)


def test_row_from_event_without_source_and_string_time() -> None:
    event = SimpleNamespace(id="a", type="t", version=2, occurred_at="2026-01-01T00:00:00+00:00",
                            data={"k": 1})
    r = Row.from_event(event, consumer_record(42, topic="events", partition=3, value=b"{}"))
    assert r.source is None
    assert r.occurred_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert "source" not in r.envelope()


async def test_store_handler_emits_the_event() -> None:
    emitted: list[object] = []

    class Ctx:
        def emit(self, event: object) -> None:
            emitted.append(event)

    await store("ev", Ctx())
    assert emitted == ["ev"]


def test_rows_of_a_run_carry_each_validated_event() -> None:
    from consumer.sinks.kafka import encode
    from schemas import validate
    from schemas.samples import sample_event

    docs = [sample_event(i) for i in range(12)]  # every type the samples make
    events = [validate(orjson.dumps(doc)) for doc in docs]
    records = [consumer_record(i, topic="events", partition=3, value=b"{}")
               for i in range(len(docs))]
    rows = Row.from_events(events, records)
    assert [r.offset for r in rows] == list(range(len(docs)))
    for doc, event, row, one in zip(docs, events, rows, (Row.from_event(e, r) for e, r in
                                                          zip(events, records, strict=True)),
                                    strict=True):
        assert row == one
        assert row.data == event.data_dict()
        out = orjson.loads(encode(row))
        assert datetime.fromisoformat(out.pop("occurred_at")) == event.occurred_at
        assert out.pop("data") == event.data_dict()  # validated: defaults filled in
        assert out == {k: v for k, v in doc.items() if k not in ("occurred_at", "data")}
