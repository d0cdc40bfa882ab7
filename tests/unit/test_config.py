from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from consumer.config import Ordering, Settings, load_settings, secrets_of
from consumer.errors import ConfigError
from consumer.masking import mask_url


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
     ("sqlite:///data/a@b.db", "sqlite:///data/a@b.db"),
     ("kafka:out", "kafka:out"),
     ("postgresql://u@h/db?password=topsecret", "postgresql://u@h/db?password=***"),
     ("postgresql://u@h/db?sslmode=require&sslpassword=k&application_name=x",
      "postgresql://u@h/db?sslmode=require&sslpassword=***&application_name=x"),
     ("https://h/hook?api_key=abc&token=def", "https://h/hook?api_key=***&token=***"),
     ("none", "none")],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


#: Unencoded characters a URL parser splits on: the password must still be found.
AWKWARD = ["p/ss", "p#ss", "p?ss", "p@ss", "p%ss", 'p"ss', "a/b#c?d@e%f\"g"]


@pytest.mark.parametrize("password", AWKWARD)
def test_an_awkward_password_is_masked_and_listed_as_secret(password: str) -> None:
    dsn = f"postgresql://app:{password}@db:5432/events"
    assert mask_url(dsn) == "postgresql://app:***@db:5432/events"
    settings = Settings.model_construct(sink_url=dsn)  # what the redaction sees
    assert password in secrets_of(settings)


@pytest.mark.parametrize("password", AWKWARD)
def test_an_awkward_password_is_accepted_only_where_clients_read_it_right(
        monkeypatch: pytest.MonkeyPatch, password: str) -> None:
    _security_env(monkeypatch)
    dsn = f"postgresql://app:{password}@db:5432/events"
    if any(c in password for c in "/#?"):  # urlsplit (and so asyncpg) would misread it
        with pytest.raises(ConfigError, match="CONSUMER_SINK_URL: ") as caught:
            load_settings(sink_url=dsn)
        assert password not in str(caught.value)
    else:
        settings = load_settings(sink_url=dsn)
        assert urlsplit(dsn).password == password
        assert password not in repr(settings)


def test_a_query_password_is_listed_as_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    _security_env(monkeypatch)
    settings = load_settings(sink_url="postgresql://u@h/db?password=top%2Fsecret")
    assert {"top%2Fsecret", "top/secret"} <= set(secrets_of(settings))
    assert "top%2Fsecret" not in repr(settings)
    assert "top/secret" not in repr(settings)


@pytest.mark.parametrize("url", ["postgresql://u:pw@h:notaport/db",
                                 "postgresql://u:p/ss@h:5432/db",
                                 "postgresql://u:12/3@h:5432/db"])
def test_a_sink_url_a_client_would_misread_exits_2_naming_the_setting(
        monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    _security_env(monkeypatch)
    with pytest.raises(ConfigError) as caught:
        load_settings(sink_url=url)
    message = str(caught.value)
    assert "CONSUMER_SINK_URL: " in message
    assert "not a valid URL" in message
    for secret in (":pw@", "p/ss", "12/3"):
        assert secret not in message


@pytest.mark.parametrize(("url", "why"), [
    ("sqlite:///./x.db", "SQLite"), ("kafka://out", "Kafka transactions"),
    ("http://127.0.0.1/in", "HTTP endpoint"), ("none", "nothing is written")])
def test_exactly_once_is_refused_for_sinks_that_cannot_store_offsets(
        monkeypatch: pytest.MonkeyPatch, url: str, why: str) -> None:
    _no_delivery_env(monkeypatch)
    with pytest.raises(ConfigError) as refused:
        load_settings(sink_url=url, delivery="exactly_once")
    assert "CONSUMER_DELIVERY" in str(refused.value)
    assert why in str(refused.value)


def test_exactly_once_and_the_apply_hook_take_the_postgres_sink(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _no_delivery_env(monkeypatch)
    settings = load_settings(sink_url="postgresql://u@127.0.0.1/db", delivery="exactly_once",
                             sink_apply="chaos.counters:apply")
    assert (settings.delivery, settings.sink_apply) == ("exactly_once", "chaos.counters:apply")
    assert load_settings().delivery == "at_least_once"  # the default
    with pytest.raises(ConfigError, match="CONSUMER_SINK_APPLY"):
        load_settings(sink_apply="chaos.counters:apply")  # the SQLite default


def _no_delivery_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CONSUMER_SINK_URL", "CONSUMER_DELIVERY", "CONSUMER_SINK_APPLY"):
        monkeypatch.delenv(name, raising=False)
