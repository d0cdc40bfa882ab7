"""JSON Schema export of the registry: one file per (type, version).

Files are named `<type>.v<version>.json` (e.g. `order.created.v1.json`), plus
`envelope.json`, the generic envelope any event satisfies. The rendering is
deterministic (sorted keys, two-space indent, final newline) so the committed
files diff cleanly and a test can demand they equal the models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas.envelope import GenericEvent
from schemas.registry import Registry, event_key

#: Where the committed schemas live (shipped as package data).
SCHEMA_DIR = Path(__file__).parent / "json"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
ENVELOPE_FILE = "envelope.json"

Document = dict[str, Any]


def file_name(type_: str, version: int) -> str:
    return f"{type_}.v{version}.json"


def documents(registry: Registry) -> dict[str, Document]:
    """File name → JSON Schema for every model of `registry`, and the envelope."""
    docs: dict[str, Document] = {}
    for model in registry:
        type_, version = event_key(model)
        name = file_name(type_, version)
        docs[name] = {"$schema": JSON_SCHEMA_DIALECT, "$id": name,
                      **model.model_json_schema()}
    docs[ENVELOPE_FILE] = {"$schema": JSON_SCHEMA_DIALECT, "$id": ENVELOPE_FILE,
                           **GenericEvent.model_json_schema()}
    return docs


def render(doc: Document) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write(registry: Registry, directory: Path = SCHEMA_DIR) -> tuple[list[Path], list[Path]]:
    """Write every document; delete `*.json` no model produces any more.

    Returns (written, removed). Files whose content is unchanged are not
    rewritten (and not listed), so timestamps move only on real changes.
    """
    directory.mkdir(parents=True, exist_ok=True)
    docs = documents(registry)
    written: list[Path] = []
    for name, doc in docs.items():
        path = directory / name
        text = render(doc)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(path)
    removed = [p for p in sorted(directory.glob("*.json")) if p.name not in docs]
    for path in removed:
        path.unlink()
    return written, removed


def load(directory: Path = SCHEMA_DIR) -> dict[str, Document]:
    """The committed documents, by file name. Raises OSError/ValueError on bad files."""
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(directory.glob("*.json"))
    }
