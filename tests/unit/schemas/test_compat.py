"""One test per compatibility rule, on small models evolved the way teams do."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from schemas import compat
from schemas.envelope import Event, Payload


def schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema()


def rules(old: type[BaseModel], new: type[BaseModel]) -> list[tuple[str, str]]:
    return [(v.rule, v.field) for v in compat.compare("x.v1.json", schema(old), schema(new))]


class Line(Payload):
    sku: str
    quantity: int


class Base(Payload):
    order_id: str
    amount: int
    note: str | None = None
    status: Literal["open", "closed"] = "open"
    lines: tuple[Line, ...] = ()


def test_identical_is_compatible() -> None:
    assert rules(Base, Base) == []


def test_rule_removed_field() -> None:
    class New(Payload):
        order_id: str
        note: str | None = None
        status: Literal["open", "closed"] = "open"
        lines: tuple[Line, ...] = ()

    assert rules(Base, New) == [("removed-field", "amount")]


def test_rule_changed_type() -> None:
    class New(Payload):
        order_id: str
        amount: str  # was int
        note: str | None = None
        status: Literal["open", "closed"] = "open"
        lines: tuple[Line, ...] = ()

    assert rules(Base, New) == [("changed-type", "amount")]


def test_rule_changed_type_on_enum_narrowing() -> None:
    class New(Payload):
        order_id: str
        amount: int
        note: str | None = None
        status: Literal["open"] = "open"  # "closed" no longer accepted
        lines: tuple[Line, ...] = ()

    [violation] = compat.compare("x.v1.json", schema(Base), schema(New))
    assert (violation.rule, violation.field) == ("changed-type", "status")
    assert "'closed'" in violation.message


def test_rule_changed_type_optional_made_non_nullable() -> None:
    class New(Payload):
        order_id: str
        amount: int
        note: str = ""  # null no longer accepted
        status: Literal["open", "closed"] = "open"
        lines: tuple[Line, ...] = ()

    assert rules(Base, New) == [("changed-type", "note")]


def test_rule_new_required_field() -> None:
    class New(Base):
        customer_id: str  # no default: old events lack it

    assert rules(Base, New) == [("new-required-field", "customer_id")]


def test_rule_new_required_field_when_optional_becomes_required() -> None:
    class New(Payload):
        order_id: str
        amount: int
        note: str | None  # was defaulted
        status: Literal["open", "closed"] = "open"
        lines: tuple[Line, ...] = ()

    violations = compat.compare("x.v1.json", schema(Base), schema(New))
    assert [(v.rule, v.field) for v in violations] == [("new-required-field", "note")]
    assert "was optional" in violations[0].message


def test_rules_apply_inside_nested_models_and_arrays() -> None:
    class NewLine(Payload):
        sku: int  # was str
        quantity: int
        unit: str  # new, required

    class New(Payload):
        order_id: str
        amount: int
        note: str | None = None
        status: Literal["open", "closed"] = "open"
        lines: tuple[NewLine, ...] = ()

    assert sorted(rules(Base, New)) == [("changed-type", "lines[].sku"),
                                        ("new-required-field", "lines[].unit")]


def test_compatible_changes_pass() -> None:
    class New(Payload):
        order_id: str
        amount: int | float  # widened
        note: str | None = None
        status: Literal["open", "closed", "void"] = "open"  # enum widened
        lines: tuple[Line, ...] = ()
        channel: str = "web"  # new field with a default
        coupon: str | None = None  # new optional field

    assert rules(Base, New) == []


def test_rule_removed_event_and_new_events() -> None:
    class EvV1(Event):
        type: Literal["x"]
        version: Literal[1]
        data: Base

    committed = {"x.v1.json": schema(EvV1), "y.v1.json": schema(EvV1)}
    current = {"x.v1.json": schema(EvV1), "z.v1.json": schema(EvV1)}
    [violation] = compat.check(committed, current)
    assert (violation.rule, violation.schema, violation.field) == ("removed-event", "y.v1.json", "")
    assert str(violation).startswith("removed-event: y.v1.json")


def test_envelope_fields_are_checked_through_refs() -> None:
    class Data2(Payload):
        order_id: str

    class EvV1(Event):
        type: Literal["x"]
        version: Literal[1]
        data: Base

    class EvV1b(Event):
        type: Literal["x"]
        version: Literal[1]
        data: Data2

    found = {(v.rule, v.field) for v in compat.compare("x", schema(EvV1), schema(EvV1b))}
    assert found == {("removed-field", "data.amount"), ("removed-field", "data.note"),
                     ("removed-field", "data.status"), ("removed-field", "data.lines")}
