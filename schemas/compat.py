"""Backward-compatibility check: committed JSON Schemas vs the current models.

"Backward compatible" here means every event a producer could send under the
committed schema still validates under the current one, and no field a
consumer relied on vanished. Rules (each violation names its rule and field):

* `removed-event`      — a committed (type, version) has no model any more.
* `removed-field`      — a committed property is gone.
* `changed-type`       — a property no longer accepts what it used to (type,
  format or enum narrowed, e.g. `integer` → `string`). Widening is fine.
* `new-required-field` — a new property without a default, or an optional one
  made required: old events lack it.

Not checked (known limits): tightened constraints (`maxLength`, `minimum`,
patterns) and the `extra` policy; review those by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Schema = dict[str, Any]

REMOVED_EVENT = "removed-event"
REMOVED_FIELD = "removed-field"
CHANGED_TYPE = "changed-type"
NEW_REQUIRED_FIELD = "new-required-field"


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str
    schema: str  # the file name, e.g. "order.created.v1.json"
    field: str  # dotted path, "[]" for array items; "" for the whole event
    message: str

    def __str__(self) -> str:
        where = f"{self.schema}: {self.field}" if self.field else self.schema
        return f"{self.rule}: {where}: {self.message}"


class _Doc:
    """One schema document; resolves local `$ref`s against its own `$defs`."""

    def __init__(self, root: Schema) -> None:
        self.root = root

    def resolve(self, node: Schema) -> Schema:
        seen = 0
        while True:
            ref = node.get("$ref")
            if ref is None and len(node.get("allOf", ())) == 1:
                ref = node["allOf"][0].get("$ref")  # pydantic's "$ref + siblings" form
            if not isinstance(ref, str) or not ref.startswith("#/") or seen > 32:
                return node
            target: Any = self.root
            for part in ref[2:].split("/"):
                target = target.get(part, {}) if isinstance(target, dict) else {}
            node, seen = target, seen + 1

    def alternatives(self, node: Schema) -> list[Schema]:
        node = self.resolve(node)
        alts = node.get("anyOf") or node.get("oneOf")
        if alts:
            return [alt for sub in alts for alt in self.alternatives(sub)]
        return [node]


def _atoms(alt: Schema) -> set[tuple[str, Any]]:
    """What one alternative accepts, coarsely: a set of (kind, value) atoms."""
    if "const" in alt:
        return {("const", _freeze(alt["const"]))}
    if "enum" in alt:
        return {("const", _freeze(v)) for v in alt["enum"]}
    types = alt.get("type")
    if types is None:
        return {("any", None)}
    names = types if isinstance(types, list) else [types]
    return {("type", (name, alt.get("format"))) for name in names}


def _freeze(value: Any) -> Any:
    return repr(value) if isinstance(value, dict | list) else value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string" if isinstance(value, str) else "object"


def _covered(atom: tuple[str, Any], new: set[tuple[str, Any]]) -> bool:
    if atom in new or ("any", None) in new:
        return True
    kind, value = atom
    new_types = {v for k, v in new if k == "type"}
    if kind == "const":
        name = _json_type(value)
        return any(t == name or (name == "integer" and t == "number") for t, _ in new_types)
    if kind == "type":
        name, fmt = value
        for t, f in new_types:
            if (t == name or (name == "integer" and t == "number")) and f in (None, fmt):
                return True
    return False


def _show(atom: tuple[str, Any]) -> str:
    kind, value = atom
    if kind == "const":
        return repr(value)
    if kind == "any":
        return "any"
    name, fmt = value
    return f"{name}({fmt})" if fmt else str(name)


def _describe(atoms: set[tuple[str, Any]]) -> str:
    return " | ".join(sorted(_show(a) for a in atoms)) or "nothing"


class _Checker:
    def __init__(self, name: str, old: Schema, new: Schema) -> None:
        self.name = name
        self.old, self.new = _Doc(old), _Doc(new)
        self.violations: list[Violation] = []

    def add(self, rule: str, field: str, message: str) -> None:
        self.violations.append(Violation(rule, self.name, field, message))

    def objects(self, old: Schema, new: Schema, path: str) -> None:
        old, new = self.old.resolve(old), self.new.resolve(new)
        old_props: dict[str, Schema] = old.get("properties", {})
        new_props: dict[str, Schema] = new.get("properties", {})
        for field in old_props:
            if field not in new_props:
                self.add(REMOVED_FIELD, _join(path, field), "field removed")
        for field in old_props.keys() & new_props.keys():
            self.value(old_props[field], new_props[field], _join(path, field))
        old_required = set(old.get("required", ()))
        for field in sorted(set(new.get("required", ())) - old_required):
            why = ("was optional, is now required" if field in old_props
                   else "new field without a default")
            self.add(NEW_REQUIRED_FIELD, _join(path, field), why)

    def value(self, old: Schema, new: Schema, path: str) -> None:
        old_alts = self.old.alternatives(old)
        new_alts = self.new.alternatives(new)
        old_atoms = set().union(*(_atoms(a) for a in old_alts))
        new_atoms = set().union(*(_atoms(a) for a in new_alts))
        lost = {a for a in old_atoms if not _covered(a, new_atoms)}
        if lost:
            self.add(CHANGED_TYPE, path,
                     f"{_describe(old_atoms)} -> {_describe(new_atoms)} (no longer accepts "
                     f"{_describe(lost)})")
            return
        # Recurse where both sides have exactly one object / array shape.
        old_obj, new_obj = _only(old_alts, "object"), _only(new_alts, "object")
        if old_obj is not None and new_obj is not None:
            self.objects(old_obj, new_obj, path)
        old_arr, new_arr = _only(old_alts, "array"), _only(new_alts, "array")
        if old_arr is not None and new_arr is not None:
            self.value(old_arr.get("items", {}), new_arr.get("items", {}), path + "[]")


def _only(alts: list[Schema], kind: str) -> Schema | None:
    found = [a for a in alts if a.get("type") == kind]
    return found[0] if len(found) == 1 else None


def _join(path: str, field: str) -> str:
    return f"{path}.{field}" if path else field


def compare(name: str, old: Schema, new: Schema) -> list[Violation]:
    """Violations of `new` against `old`, two schema documents of one event."""
    checker = _Checker(name, old, new)
    checker.objects(old, new, "")
    return checker.violations


def check(committed: dict[str, Schema], current: dict[str, Schema]) -> list[Violation]:
    """Every violation of `current` (from the models) against `committed`.

    Documents only in `current` are new events: always compatible.
    """
    violations: list[Violation] = []
    for name, old in sorted(committed.items()):
        new = current.get(name)
        if new is None:
            violations.append(Violation(REMOVED_EVENT, name, "", "no model for this event"))
            continue
        violations.extend(compare(name, old, new))
    return violations
