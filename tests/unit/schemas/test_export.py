"""The committed JSON Schemas equal the models; the CLI exports and checks."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from consumer.cli import app
from schemas import REGISTRY, export

runner = CliRunner()


def test_committed_schemas_match_the_models() -> None:
    """Fails when a model changed without `consumer schemas export`."""
    committed = export.load(export.SCHEMA_DIR)
    current = export.documents(REGISTRY)
    assert sorted(committed) == sorted(current), "run `consumer schemas export`"
    for name, doc in current.items():
        on_disk = (export.SCHEMA_DIR / name).read_text(encoding="utf-8")
        assert on_disk == export.render(doc), f"{name} is stale: run `consumer schemas export`"


def test_one_file_per_event_and_the_envelope() -> None:
    names = set(export.documents(REGISTRY))
    assert names == {"envelope.json", "order.created.v1.json", "order.created.v2.json",
                     "order.paid.v1.json", "order.cancelled.v1.json"}
    doc = export.documents(REGISTRY)["order.created.v2.json"]
    assert doc["$schema"] == export.JSON_SCHEMA_DIALECT
    assert doc["properties"]["type"]["const"] == "order.created"
    assert doc["properties"]["version"]["const"] == 2
    assert doc["properties"]["occurred_at"]["format"] == "date-time"


def test_export_writes_and_prunes(tmp_path: Path) -> None:
    (tmp_path / "order.gone.v1.json").write_text("{}")
    result = runner.invoke(app, ["schemas", "export", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "removed" in result.output
    assert sorted(p.name for p in tmp_path.glob("*.json")) == sorted(export.documents(REGISTRY))
    again = runner.invoke(app, ["schemas", "export", "--dir", str(tmp_path)])
    assert "0 written, 0 removed" in again.output


def test_check_passes_on_the_committed_schemas() -> None:
    result = runner.invoke(app, ["schemas", "check"])
    assert result.exit_code == 0, result.output
    assert "ok:" in result.output


def test_check_fails_naming_rule_and_field(tmp_path: Path) -> None:
    export.write(REGISTRY, tmp_path)
    path = tmp_path / "order.paid.v1.json"
    doc = json.loads(path.read_text())
    # Pretend the committed v1 had a field the model no longer has.
    data_def = doc["$defs"]["OrderPaidData"]
    data_def["properties"]["note"] = {"type": "string"}
    path.write_text(json.dumps(doc))
    result = runner.invoke(app, ["schemas", "check", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "removed-field: order.paid.v1.json: data.note" in result.output


def test_check_reports_a_removed_event(tmp_path: Path) -> None:
    export.write(REGISTRY, tmp_path)
    (tmp_path / "order.refunded.v1.json").write_text(
        (tmp_path / "order.paid.v1.json").read_text())
    result = runner.invoke(app, ["schemas", "check", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "removed-event: order.refunded.v1.json" in result.output


def test_check_notes_compatible_unexported_changes(tmp_path: Path) -> None:
    export.write(REGISTRY, tmp_path)
    (tmp_path / "order.cancelled.v1.json").unlink()  # a "new" event: compatible
    result = runner.invoke(app, ["schemas", "check", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "not exported yet" in result.output


def test_check_on_unreadable_schemas(tmp_path: Path) -> None:
    (tmp_path / "order.paid.v1.json").write_text("{not json")
    result = runner.invoke(app, ["schemas", "check", "--dir", str(tmp_path)])
    assert result.exit_code == 2
