"""Settings: read once from the environment (prefix `CONSUMER_`) and an
optional TOML file, validated, frozen. Environment wins over the file.

`load_settings` raises `ConfigError` naming the offending variable, so
`consumer run` can exit 2 before it connects to anything.
"""

from __future__ import annotations

import importlib
import os
import tomllib
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from consumer.errors import ConfigError
from consumer.masking import mask_url, sink_secrets

ENV_PREFIX = "CONSUMER_"


class Tracing(StrEnum):
    NONE = "none"  # no spans, no header parsing: the tracing code is not loaded
    OTLP = "otlp"  # OpenTelemetry, exported over OTLP; the rest from the OTEL_* variables


class Ordering(StrEnum):
    PARTITION = "partition"  # sequential per partition
    KEY = "key"  # sequential per key, parallel across keys
    UNORDERED = "unordered"  # fully parallel


class Delivery(StrEnum):
    AT_LEAST_ONCE = "at_least_once"  # offsets in Kafka only; redeliveries absorbed by upserts
    EXACTLY_ONCE = "exactly_once"  # offsets stored with the rows (PostgreSQL sink only)


#: Why a sink cannot take CONSUMER_DELIVERY=exactly_once (the start-up refusal).
_NO_EXACTLY_ONCE = {
    "sqlite": "SQLite is single-writer on one file per pod; its sink does not store offsets",
    "kafka": "the Kafka sink would need Kafka transactions (sendOffsetsToTransaction), "
             "which the service does not use",
    "http": "an HTTP endpoint has no transaction the offsets could join",
    "none": "nothing is written, so there is no transaction to store offsets in",
}


class SecurityProtocol(StrEnum):
    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"


class ValueFormat(StrEnum):
    JSON = "json"  # the envelope as JSON (no registry)
    AVRO = "avro"  # Confluent wire format: 0x00, schema id, Avro binary (writer's schema)
    JSON_SCHEMA = "json_schema"  # Confluent wire format: 0x00, schema id, JSON
    AUTO = "auto"  # the wire format when a value starts with 0x00, plain JSON otherwise
    PROTOBUF = "protobuf"  # refused at start (see README: Protobuf)


class SaslMechanism(StrEnum):
    PLAIN = "PLAIN"
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512"


#: Settings whose values are never printed, not even when they are invalid.
SECRET_FIELDS = frozenset({"sasl_password", "ssl_key_password", "schema_registry_password"})
#: Settings that may hold a URL or DSN with a password: printed masked
#: (`consumer.masking.mask_url`).
URL_FIELDS = frozenset({"sink_url", "schema_registry_url"})


def _bad(field: str, message: str) -> PydanticCustomError:
    """A model-level error that still names its setting (see `describe`)."""
    return PydanticCustomError("setting", "{message}", {"field": field, "message": message})


def _split(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Every knob of the service. Names map to `CONSUMER_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid")

    # Kafka source
    bootstrap_servers: str = "localhost:9092"
    topics: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["events"])
    group_id: str = "consumer"
    group_instance_id: str | None = None  # static membership: no rebalance on restart
    client_id: str = "consumer"
    auto_offset_reset: str = Field("earliest", pattern="^(earliest|latest)$")
    #: read_committed: records of aborted transactions are never delivered,
    #: and open transactions are waited for (read up to the stable offset).
    isolation_level: Literal["read_committed", "read_uncommitted"] = "read_committed"
    #: Codec of the service's own producers: dead letters, the kafka:// sink,
    #: `consumer produce`. Every codec is always decoded when consuming.
    compression_type: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "lz4"
    session_timeout_ms: int = Field(10_000, ge=1_000)
    heartbeat_interval_ms: int = Field(3_000, ge=100)
    # Raised from aiokafka's default (the session timeout) so a revoke can drain.
    rebalance_timeout_ms: int = Field(60_000, ge=1_000)
    max_poll_interval_ms: int = Field(300_000, ge=1_000)
    fetch_max_bytes: int = Field(52_428_800, ge=1_024)
    max_partition_fetch_bytes: int = Field(1_048_576, ge=1_024)
    fetch_max_wait_ms: int = Field(500, ge=0)
    max_poll_records: int = Field(5_000, ge=1)

    # Kafka security: one set for every client (consumer, producers, admin).
    security_protocol: SecurityProtocol = SecurityProtocol.PLAINTEXT
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    #: A mounted secret file holding the password (one trailing newline dropped).
    sasl_password_file: Path | None = None
    ssl_cafile: Path | None = None  # CA bundle that signed the brokers' certificates
    ssl_certfile: Path | None = None  # client certificate (PEM) for mutual TLS
    ssl_keyfile: Path | None = None  # its private key (PEM), if not in the certfile
    ssl_key_password: SecretStr | None = None  # if the private key is encrypted
    ssl_check_hostname: bool = True

    # Flow control and dispatch
    max_in_flight: int = Field(10_000, ge=1)
    max_in_flight_bytes: int = Field(64 * 1024 * 1024, ge=1_024)
    #: Resume once in-flight falls to this share of the limit (the low watermark).
    resume_ratio: float = Field(0.5, gt=0.0, lt=1.0)
    ordering: Ordering = Ordering.KEY
    concurrency: int = Field(16, ge=1, le=10_000)

    # Commit
    commit_interval: float = Field(1.0, gt=0.0)  # seconds between periodic commits
    commit_every: int = Field(10_000, ge=1)  # or after this many newly done messages
    commit_timeout: float = Field(10.0, gt=0.0)

    # Lifecycle
    shutdown_timeout: float = Field(30.0, gt=0.0)
    http_host: str = "0.0.0.0"
    http_port: int = Field(8080, ge=0, le=65_535)
    log_level: str = "INFO"
    log_format: str = Field("json", pattern="^(json|console)$")
    #: After a failure once consuming (exit 1) keep /metrics up this long, so
    #: the last scrape sees why (the breaker gauge, the counters); at least the
    #: scrape interval: 30 s by default for a ServiceMonitor, plus a margin.
    metrics_linger: float = Field(35.0, ge=0.0)

    # Handler and middleware
    handler: str | None = None  # "module:function"; None = built-in store
    middleware: Annotated[list[str], NoDecode] = Field(default_factory=list)
    handler_timeout: float = Field(30.0, gt=0.0)
    allow_unknown_types: bool = False

    # Sink and batching
    sink_url: str = "sqlite:///./consumer.db"
    batch_max_items: int = Field(1_000, ge=1)
    batch_max_bytes: int = Field(1_048_576, ge=1)
    batch_max_latency: float = Field(0.2, gt=0.0)
    #: Waits between retries of a failed sink write (forever, while the sink
    #: is down): their own settings, apart from the handler's retries.
    sink_retry_base_delay: float = Field(0.1, gt=0.0)
    sink_retry_max_delay: float = Field(5.0, gt=0.0)
    #: at_least_once: offsets in Kafka only. exactly_once (PostgreSQL sink):
    #: each write transaction also stores the partitions' progress and checks
    #: their fencing epoch; see "Delivery guarantees" in the README.
    delivery: Delivery = Delivery.AT_LEAST_ONCE
    #: "module:function": `await apply(connection, rows)` inside each write
    #: transaction of the PostgreSQL sink, for the user's own tables.
    sink_apply: str | None = None

    # Retry and dead-letter
    retry_max_attempts: int = Field(5, ge=1)
    retry_base_delay: float = Field(0.1, ge=0.0)
    retry_max_delay: float = Field(10.0, ge=0.0)
    retry_deadline: float = Field(120.0, gt=0.0)
    retry_on: Annotated[list[str], NoDecode] = Field(default_factory=list)
    fatal_on: Annotated[list[str], NoDecode] = Field(default_factory=list)
    dlq_topic: str | None = None  # default: "<first topic>.dlq"
    dlq_breaker_ratio: float = Field(0.5, gt=0.0, le=1.0)
    dlq_breaker_window: int = Field(200, ge=1)
    dlq_breaker_consecutive: int = Field(100, ge=1)
    #: Bound on one dead-letter send attempt; a failed send is retried forever.
    dlq_send_timeout: float = Field(10.0, gt=0.0)

    # Record values: plain JSON, or a Schema Registry's wire format (consumer/formats/)
    value_format: ValueFormat = ValueFormat.JSON
    #: Base URL of a Confluent-compatible registry (Apicurio: .../apis/ccompat/v7).
    schema_registry_url: str | None = None
    schema_registry_user: str | None = None
    schema_registry_password: SecretStr | None = None
    #: A mounted secret file holding the registry password.
    schema_registry_password_file: Path | None = None
    #: CA bundle that signed the registry's certificate (https only).
    schema_registry_ca: Path | None = None
    #: Bound on one registry request; a slow registry is retried, never skipped.
    schema_registry_timeout: float = Field(5.0, gt=0.0)

    # Tracing (the `otel` extra); endpoint, sampler, service name: the OTEL_* variables
    tracing: Tracing = Tracing.NONE
    #: Record a message's key on its span when it is short UTF-8 text.
    tracing_record_keys: bool = True

    # Downstream rate limit (per downstream name, shared by all workers)
    rate_limit: float = Field(100.0, gt=0.0)  # requests per second
    rate_burst: int = Field(10, ge=1)

    @field_validator("topics", "middleware", "retry_on", "fatal_on", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_port(cls, value: str) -> str:
        for item in value.split(","):
            host, colon, port = item.strip().rpartition(":")
            if not item.strip() or (colon and (not host or not port.isdigit())):
                raise ValueError("expected host:port[,host:port...]")
        return value

    @field_validator("topics")
    @classmethod
    def _some_topic(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one topic is required")
        return value

    @field_validator("sink_url")
    @classmethod
    def _url_form(cls, value: str) -> str:
        # A client library would fail on it later, with a traceback that may
        # show the password: refuse it here, naming the setting.
        if "://" in value:
            bad = ("not a valid URL: percent-encode `/ # ? @ %` in the user name and "
                   "password, and give the port as a number")
            try:
                parts = urlsplit(value)
                parts.port  # noqa: B018 - parses the port, raising if it is not one
            except ValueError:
                raise ValueError(bad) from None  # its text would quote the password
            if parts.netloc and "@" in value.partition("?")[0] and "@" not in parts.netloc:
                raise ValueError(bad)  # the user info was cut short by a `/ # ?`
        return value

    @field_validator("handler")
    @classmethod
    def _handler_form(cls, value: str | None) -> str | None:
        if value is not None and value != "store" and ":" not in value:
            raise ValueError("expected 'module:function'")
        return None if value == "store" else value

    @field_validator("sink_apply")
    @classmethod
    def _apply_form(cls, value: str | None) -> str | None:
        if value is not None and ":" not in value:
            raise ValueError("expected 'module:function'")
        return value or None

    @model_validator(mode="after")
    def _delivery(self) -> Self:
        postgres = self.sink_url.startswith(("postgresql://", "postgres://"))
        if self.delivery is Delivery.EXACTLY_ONCE and not postgres:
            kind = self.sink_url.partition(":")[0].removesuffix("s")
            why = _NO_EXACTLY_ONCE.get(kind, "only the PostgreSQL sink stores offsets with "
                                             "its rows")
            raise _bad("delivery", f"exactly_once needs the PostgreSQL sink "
                       f"(CONSUMER_SINK_URL=postgresql://…): {why}")
        if self.sink_apply is not None and not postgres:
            raise _bad("sink_apply", "needs the PostgreSQL sink (CONSUMER_SINK_URL=postgresql://…)"
                       ": it runs inside its write transaction")
        return self

    @model_validator(mode="before")
    @classmethod
    def _password_file(cls, values: Any) -> Any:
        for name in ("sasl_password", "schema_registry_password"):
            values = _read_secret_file(values, name)
        return values

    @model_validator(mode="after")
    def _kafka_security(self) -> Self:
        protocol = f"CONSUMER_SECURITY_PROTOCOL={self.security_protocol.value}"
        self._check_sasl(protocol)
        self._check_tls(protocol)
        return self

    def _check_sasl(self, protocol: str) -> None:
        if self.security_protocol in (SecurityProtocol.SASL_PLAINTEXT, SecurityProtocol.SASL_SSL):
            for name in ("sasl_mechanism", "sasl_username", "sasl_password"):
                if not getattr(self, name):
                    alt = " (or CONSUMER_SASL_PASSWORD_FILE)" if name == "sasl_password" else ""
                    raise _bad(name, f"required with {protocol}{alt}")
        else:
            for name in ("sasl_mechanism", "sasl_username", "sasl_password"):
                if getattr(self, name):
                    raise _bad(name, f"only used with SASL_PLAINTEXT or SASL_SSL, not {protocol}")

    def _check_tls(self, protocol: str) -> None:
        tls = self.security_protocol in (SecurityProtocol.SSL, SecurityProtocol.SASL_SSL)
        if tls and self.ssl_cafile is None:
            raise _bad("ssl_cafile", f"required with {protocol}: the CA bundle that signed the "
                       "brokers' certificates (for a public CA, the system bundle, e.g. "
                       "/etc/ssl/certs/ca-certificates.crt)")
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path: Path | None = getattr(self, name)
            if path is None:
                continue
            if not tls:
                raise _bad(name, f"only used with SSL or SASL_SSL, not {protocol}")
            if not os.access(path, os.R_OK) or not path.is_file():
                raise _bad(name, f"{path} is not a readable file")
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise _bad("ssl_keyfile", "needs CONSUMER_SSL_CERTFILE (the certificate of this key)")
        if self.ssl_key_password is not None and self.ssl_certfile is None:
            raise _bad("ssl_key_password", "needs CONSUMER_SSL_CERTFILE")

    @model_validator(mode="after")
    def _registry(self) -> Self:
        fmt = f"CONSUMER_VALUE_FORMAT={self.value_format.value}"
        if self.value_format is ValueFormat.PROTOBUF:
            raise _bad("value_format", "protobuf is not supported: its values cannot be decoded "
                       "honestly from the registry's schema at run time here (see the README); "
                       "use avro, json_schema, auto or json")
        needs = self.value_format is not ValueFormat.JSON
        if needs and not self.schema_registry_url:
            raise _bad("schema_registry_url", f"required with {fmt}")
        registry = ("schema_registry_url", "schema_registry_user", "schema_registry_password",
                    "schema_registry_ca")
        if not needs:
            for name in registry:
                if getattr(self, name):
                    raise _bad(name, f"only used with a registry format (avro, json_schema, "
                               f"auto), not {fmt}")
            return self
        url = urlsplit(str(self.schema_registry_url))
        if url.scheme not in ("http", "https") or not url.hostname:
            raise _bad("schema_registry_url", "expected http(s)://host[:port][/path]")
        if url.username or url.password:
            raise _bad("schema_registry_url", "put the credentials in "
                       "CONSUMER_SCHEMA_REGISTRY_USER and _PASSWORD, not in the URL")
        if bool(self.schema_registry_user) != bool(self.schema_registry_password):
            name = "schema_registry_password" if self.schema_registry_user else \
                "schema_registry_user"
            raise _bad(name, "the registry's basic auth needs both "
                       "CONSUMER_SCHEMA_REGISTRY_USER and CONSUMER_SCHEMA_REGISTRY_PASSWORD "
                       "(or _PASSWORD_FILE)")
        if self.schema_registry_ca is not None:
            if url.scheme != "https":
                raise _bad("schema_registry_ca", "only used with an https:// registry URL")
            path = self.schema_registry_ca
            if not os.access(path, os.R_OK) or not path.is_file():
                raise _bad("schema_registry_ca", f"{path} is not a readable file")
        return self

    @model_validator(mode="after")
    def _no_cycle(self) -> Self:
        # A topic the service writes and also reads: every record comes back
        # to it, forever (a dead letter dead-lettered again, a row stored again).
        sources = set(self.topics)
        if self.dead_letter_topic in sources:
            default = "" if self.dlq_topic else " (the default: <first topic>.dlq)"
            raise _bad("dlq_topic", f"the dead-letter topic {self.dead_letter_topic!r}{default} "
                       "is also a source topic in CONSUMER_TOPICS: every dead letter would be "
                       "consumed again; choose a topic that is not consumed")
        if self.sink_url.startswith("kafka://"):
            topic = self.sink_url.removeprefix("kafka://").strip("/")
            if topic in sources:
                raise _bad("sink_url", f"the sink topic {topic!r} is also a source topic in "
                           "CONSUMER_TOPICS: every stored event would be consumed again; "
                           "choose a topic that is not consumed")
        return self

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if self.retry_max_delay < self.retry_base_delay:
            raise ValueError("retry_max_delay must be >= retry_base_delay")
        if self.sink_retry_max_delay < self.sink_retry_base_delay:
            raise ValueError("sink_retry_max_delay must be >= sink_retry_base_delay")
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be < session_timeout_ms")
        return self

    def __repr_args__(self) -> Any:
        # SecretStr fields mask themselves; a DSN's password is masked here.
        for key, value in super().__repr_args__():
            masked = key in URL_FIELDS and isinstance(value, str)
            yield key, mask_url(value) if masked else value

    @property
    def dead_letter_topic(self) -> str:
        return self.dlq_topic or f"{self.topics[0]}.dlq"

    @property
    def producer_compression(self) -> str | None:
        """`compression_type` as the Kafka client's producers take it."""
        return None if self.compression_type == "none" else self.compression_type

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment over file: the file is passed as init kwargs.
        return (env_settings, init_settings)


def _read_secret_file(values: Any, name: str) -> Any:
    """`<name>_file` read into `<name>`: a mounted secret (one trailing
    newline dropped); both set is an error naming the file setting."""
    file_field = f"{name}_file"
    if not isinstance(values, dict) or not values.get(file_field):
        return values
    if values.get(name):
        env = f"{ENV_PREFIX}{name.upper()}"
        raise _bad(file_field, f"set either {env} or {env}_FILE, not both")
    path = Path(values[file_field])
    try:
        secret = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _bad(file_field, f"cannot read {path}: "
                   f"{getattr(exc, 'strerror', None) or type(exc).__name__}") from None
    # Secret files written with `echo` or by editors end in a newline.
    return {**values, name: secret.removesuffix("\n").removesuffix("\r")}


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Build `Settings` from env, `config` (TOML, keys as field names) and overrides.

    Raises `ConfigError` whose message names each bad setting as its variable.
    """
    values: dict[str, Any] = {}
    if config is not None:
        try:
            values = tomllib.loads(config.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"--config {config}: {exc}") from exc
        values = values.get("consumer", values)
    values.update(overrides)
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from exc


def describe(exc: ValidationError) -> str:
    """One line per error, naming the variable. Secret values are never
    shown; URLs are shown with their password masked."""
    lines = []
    for err in exc.errors():
        ctx = err.get("ctx") or {}
        field = str(err["loc"][0]) if err["loc"] else str(ctx.get("field", ""))
        name = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
        if not err["loc"]:
            # A model-level error: its input is every setting, secrets included.
            got = ""
        elif field in SECRET_FIELDS:
            got = " (value not shown)"
        elif field in URL_FIELDS and isinstance(err.get("input"), str):
            got = f" (got {mask_url(err['input'])!r})"
        else:
            got = f" (got {err.get('input')!r})"
        lines.append(f"{name}: {err['msg']}{got}")
    return "invalid settings:\n  " + "\n  ".join(lines)


def kafka_topic(url: str) -> str:
    """The topic of a `kafka://topic` sink URL; `ConfigError` naming
    CONSUMER_SINK_URL otherwise."""
    topic = url.removeprefix("kafka://").strip("/")
    if not url.startswith("kafka://") or not topic or "/" in topic:
        raise ConfigError(f"CONSUMER_SINK_URL: expected kafka://topic, got {mask_url(url)!r}")
    return topic


def secrets_of(settings: Settings) -> list[str]:
    """Every secret value in `settings`, for log redaction: as written and
    percent-decoded."""
    found = [s.get_secret_value() for s in (settings.sasl_password, settings.ssl_key_password,
                                            settings.schema_registry_password)
             if s is not None]
    return [s for s in [*found, *sink_secrets(settings.sink_url)] if s]


def load_callable(spec: str, setting: str) -> Callable[..., Any]:
    """`module:name` (the form of CONSUMER_HANDLER, CONSUMER_MIDDLEWARE and
    CONSUMER_SINK_APPLY) → the object, imported. Raises `ConfigError` naming
    `setting` when it cannot be imported or is not callable."""
    module, _, name = spec.partition(":")
    try:
        target = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"{setting}: cannot load {spec!r}: {exc}") from exc
    if not callable(target):
        raise ConfigError(f"{setting}: {spec!r} is not callable")
    loaded: Callable[..., Any] = target
    return loaded
