from __future__ import annotations

import pytest

from consumer.config import Ordering, load_settings
from consumer.errors import ConfigError


def test_defaults_match_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CONSUMER_TOPICS", "CONSUMER_BOOTSTRAP_SERVERS", "CONSUMER_SINK_URL"):
        monkeypatch.delenv(name, raising=False)
    s = load_settings()
    assert s.bootstrap_servers == "localhost:9092"
    assert s.topics == ["events"]
    assert s.group_id == "consumer"
    assert s.sink_url == "sqlite:///./consumer.db"
    assert s.dead_letter_topic == "events.dlq"
    assert s.http_port == 8080
    assert s.shutdown_timeout == 30
    assert s.ordering is Ordering.KEY


def test_env_parses_lists_and_wins_over_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pytest.TempPathFactory
) -> None:
    cfg = tmp_path / "c.toml"  # type: ignore[operator]
    cfg.write_text('topics = "x"\ngroup_id = "from-file"\n')
    monkeypatch.setenv("CONSUMER_TOPICS", "a, b")
    s = load_settings(cfg)
    assert s.topics == ["a", "b"]
    assert s.group_id == "from-file"
    assert s.dead_letter_topic == "a.dlq"


@pytest.mark.parametrize(
    ("var", "value"),
    [("CONSUMER_MAX_IN_FLIGHT", "0"), ("CONSUMER_ORDERING", "random"),
     ("CONSUMER_HANDLER", "nocolon"), ("CONSUMER_HTTP_PORT", "70000")],
)
def test_bad_setting_is_named(monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=var):
        load_settings()
