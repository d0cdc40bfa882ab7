from __future__ import annotations

from pathlib import Path

import pytest

from consumer.config import Ordering, load_settings, mask_url, secrets_of
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


# -- Kafka security settings -------------------------------------------------

SECRET = "s3cret-Value"


def _security_env(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    for name in ("SECURITY_PROTOCOL", "SASL_MECHANISM", "SASL_USERNAME", "SASL_PASSWORD",
                 "SASL_PASSWORD_FILE", "SSL_CAFILE", "SSL_CERTFILE", "SSL_KEYFILE"):
        monkeypatch.delenv(f"CONSUMER_{name}", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(f"CONSUMER_{name.upper()}", value)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"sasl_mechanism": "PLAIN"}, "CONSUMER_SASL_MECHANISM"),  # SASL without a SASL protocol
        ({"sasl_username": "u"}, "CONSUMER_SASL_USERNAME"),
        ({"security_protocol": "SASL_PLAINTEXT", "sasl_username": "u",
          "sasl_password": SECRET}, "CONSUMER_SASL_MECHANISM"),
        ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-256",
          "sasl_password": SECRET}, "CONSUMER_SASL_USERNAME"),
        ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-256",
          "sasl_username": "u"}, "CONSUMER_SASL_PASSWORD"),
        ({"security_protocol": "SSL"}, "CONSUMER_SSL_CAFILE"),  # TLS without a CA
        ({"security_protocol": "SSL", "ssl_cafile": "/no/such/ca.pem"}, "CONSUMER_SSL_CAFILE"),
        ({"ssl_cafile": __file__}, "CONSUMER_SSL_CAFILE"),  # TLS file without TLS
        ({"security_protocol": "SSL", "ssl_cafile": __file__, "ssl_keyfile": __file__},
         "CONSUMER_SSL_KEYFILE"),  # a key without its certificate
        ({"security_protocol": "SSL", "ssl_cafile": __file__,
          "ssl_certfile": "/no/such/cert.pem"}, "CONSUMER_SSL_CERTFILE"),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI", "sasl_username": "u",
          "sasl_password": SECRET, "ssl_cafile": __file__}, "CONSUMER_SASL_MECHANISM"),
        ({"sasl_password_file": "/no/such/file"}, "CONSUMER_SASL_PASSWORD_FILE"),
        ({"sasl_password_file": __file__, "sasl_password": SECRET},
         "CONSUMER_SASL_PASSWORD_FILE"),  # both forms
        ({"security_protocol": "TLS"}, "CONSUMER_SECURITY_PROTOCOL"),
        ({"bootstrap_servers": "broker:ninety"}, "CONSUMER_BOOTSTRAP_SERVERS"),
    ],
)
def test_inconsistent_security_is_named_and_never_shows_the_secret(
        monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str) -> None:
    _security_env(monkeypatch, **env)
    with pytest.raises(ConfigError, match=named) as caught:
        load_settings()
    assert SECRET not in str(caught.value)


def test_password_file_is_read_without_its_trailing_newline(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret_file = tmp_path / "password"
    secret_file.write_text(SECRET + "\n")
    _security_env(monkeypatch, security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
                  sasl_username="svc", sasl_password_file=str(secret_file))
    settings = load_settings()
    assert settings.sasl_password is not None
    assert settings.sasl_password.get_secret_value() == SECRET
    assert SECRET not in repr(settings)
    assert secrets_of(settings) == [SECRET]


def test_a_dsn_password_is_masked_in_repr_and_errors_and_listed_as_secret(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _security_env(monkeypatch)
    dsn = f"postgresql://app:{SECRET}@db:5432/events"
    settings = load_settings(sink_url=dsn)
    assert SECRET not in repr(settings)
    assert "postgresql://app:***@db:5432/events" in repr(settings)
    assert SECRET in secrets_of(settings)
    with pytest.raises(ConfigError) as caught:
        load_settings(sink_url=dsn, batch_max_items=0)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "masked"),
    [("postgresql://u:p%40ss@h:5/d", "postgresql://u:***@h:5/d"),
     ("https://user:pw@example.test/hook", "https://user:***@example.test/hook"),
     ("postgresql://u@h/d", "postgresql://u@h/d"),
     ("sqlite:///./consumer.db", "sqlite:///./consumer.db"),
     ("none", "none")],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked
