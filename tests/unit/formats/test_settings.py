"""The registry settings: bad combinations name their setting (exit 2),
the password never shows, and its file form is read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from consumer.config import load_settings, secrets_of
from consumer.errors import ConfigError

SECRET = "registry-s3cret"
URL = "http://registry:8081"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("VALUE_FORMAT", "SCHEMA_REGISTRY_URL", "SCHEMA_REGISTRY_USER",
                 "SCHEMA_REGISTRY_PASSWORD", "SCHEMA_REGISTRY_PASSWORD_FILE",
                 "SCHEMA_REGISTRY_CA"):
        monkeypatch.delenv(f"CONSUMER_{name}", raising=False)


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"value_format": "avro"}, "CONSUMER_SCHEMA_REGISTRY_URL: required"),
        ({"value_format": "protobuf", "schema_registry_url": URL},
         "CONSUMER_VALUE_FORMAT: protobuf is not supported"),
        ({"value_format": "xml"}, "CONSUMER_VALUE_FORMAT"),
        ({"schema_registry_url": URL}, "CONSUMER_SCHEMA_REGISTRY_URL: only used"),
        ({"value_format": "avro", "schema_registry_url": "registry:8081"},
         "CONSUMER_SCHEMA_REGISTRY_URL: expected"),
        ({"value_format": "avro", "schema_registry_url": f"http://u:{SECRET}@registry"},
         "CONSUMER_SCHEMA_REGISTRY_URL: put the credentials"),
        ({"value_format": "auto", "schema_registry_url": URL, "schema_registry_user": "u"},
         "CONSUMER_SCHEMA_REGISTRY_PASSWORD"),
        ({"value_format": "auto", "schema_registry_url": URL,
          "schema_registry_password": SECRET}, "CONSUMER_SCHEMA_REGISTRY_USER"),
        ({"value_format": "avro", "schema_registry_url": URL, "schema_registry_ca": __file__},
         "CONSUMER_SCHEMA_REGISTRY_CA: only used with an https"),
        ({"value_format": "avro", "schema_registry_url": "https://registry",
          "schema_registry_ca": "/no/such/ca.pem"}, "CONSUMER_SCHEMA_REGISTRY_CA"),
        ({"value_format": "avro", "schema_registry_url": URL, "schema_registry_user": "u",
          "schema_registry_password": SECRET, "schema_registry_password_file": __file__},
         "CONSUMER_SCHEMA_REGISTRY_PASSWORD_FILE: set either"),
    ],
)
def test_bad_registry_settings_are_named_and_never_show_the_password(
        values: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named) as caught:
        load_settings(**values)
    assert SECRET not in str(caught.value)


def test_the_password_file_is_read_masked_and_listed_for_redaction(tmp_path: Path) -> None:
    secret_file = tmp_path / "password"
    secret_file.write_text(SECRET + "\n")
    settings = load_settings(value_format="avro", schema_registry_url=URL,
                             schema_registry_user="svc",
                             schema_registry_password_file=str(secret_file))
    assert settings.schema_registry_password is not None
    assert settings.schema_registry_password.get_secret_value() == SECRET
    assert SECRET not in repr(settings)
    assert secrets_of(settings) == [SECRET]


def test_json_stays_the_default_and_needs_no_registry() -> None:
    settings = load_settings()
    assert settings.value_format.value == "json"
    assert settings.schema_registry_url is None
