"""The Helm chart's `config` values, derived from `Settings`.

The chart passes `config.<name>` to the service as `CONSUMER_<NAME>`, so the
JSON Schema of that block is the Settings model's own (types, ranges, patterns,
enums): a bad value fails at `helm install` with the setting's name. Settings
the chart sets from dedicated values (`CHART_MANAGED`) or keeps in its Secret
(`CHART_SECRET`) are left out of `config`.

`python -m devtools.chart` rewrites `helm/consumer/values.schema.json`
after a setting changes; a test fails while the file and the model differ.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from consumer.config import SECRET_FIELDS, Settings
from devtools.ports import project_root

#: Settings the chart sets from its own values.
CHART_MANAGED = frozenset({
    "bootstrap_servers", "topics", "group_id", "dlq_topic", "group_instance_id",
    "shutdown_timeout", "http_port",
    # kafka.security: the chart mounts the files and points these at them.
    "security_protocol", "sasl_mechanism", "sasl_username", "sasl_password_file",
    "ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname",
    # schemaRegistry: the user in the Secret, the password and CA files mounted.
    "schema_registry_user", "schema_registry_password_file", "schema_registry_ca",
})
#: Settings the chart keeps in its Secret (or an existing one).
CHART_SECRET = frozenset({"sink_url"}) | SECRET_FIELDS

#: JSON Schema keywords kept from pydantic's output (the rest is annotation).
_KEEP = ("type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
         "pattern", "enum", "items", "anyOf")


def schema_path() -> Path:
    return project_root() / "helm" / "consumer" / "values.schema.json"


def config_schema() -> dict[str, Any]:
    """The JSON Schema of the chart's `config` block."""
    model = Settings.model_json_schema()
    defs = model.get("$defs", {})
    properties = {}
    for name, prop in model["properties"].items():
        if name in CHART_MANAGED or name in CHART_SECRET:
            continue
        properties[name] = _plain(prop, defs)
    return {
        "type": "object",
        "description": "Service settings by name, rendered as CONSUMER_<NAME>.",
        "additionalProperties": False,
        "properties": properties,
    }


def _plain(prop: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = prop.get("$ref")
    if ref is not None:
        return _plain(defs[ref.rsplit("/", 1)[-1]], defs)
    out: dict[str, Any] = {}
    for key in _KEEP:
        if key not in prop:
            continue
        value = prop[key]
        if key == "anyOf":
            value = [_plain(option, defs) for option in value]
        elif key == "items":
            value = _plain(value, defs)
        out[key] = value
    if out.get("type") == "array":
        # Comma-separated lists: either a YAML list or one string.
        out = {"anyOf": [out, {"type": "string"}]}
    return out


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2) + "\n"


def main() -> None:
    path = schema_path()
    schema = json.loads(path.read_text())
    schema["properties"]["config"] = config_schema()
    path.write_text(render(schema))


if __name__ == "__main__":
    main()
