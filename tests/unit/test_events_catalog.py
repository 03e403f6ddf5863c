"""The start-up check compares the schemas' enums with the catalog, both ways."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.config import Settings
from engine.events import (
    CATALOG_ENUMS,
    PAYMENT_NOTIFIED,
    PAYMENT_SETTLED,
    PAYMENT_STEP_COMPLETED,
    PAYMENT_STEP_REQUESTED,
    EventDeclarationError,
    EventType,
    check_against_schemas,
)
from engine.serialization import SchemaFileError, SchemaRegistry

SCHEMAS = Settings().schemas_dir


def schemas_with(
    tmp_path: Path, event: EventType, field: str, change: Callable[[dict[str, Any]], None]
) -> Path:
    """A copy of the shipped schemas with ``change`` applied to one field of one schema."""
    target = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, target)
    path = target / event.schema_file
    schema = json.loads(path.read_text())
    change(next(f for f in schema["fields"] if f["name"] == field))
    path.write_text(json.dumps(schema))
    return target


def enum_of(field: dict[str, Any]) -> dict[str, Any]:
    kind = field["type"]
    return next(t for t in kind if isinstance(t, dict)) if isinstance(kind, list) else kind


def test_the_shipped_schemas_spell_the_catalog_in_each_of_their_enums() -> None:
    check_against_schemas(SCHEMAS)
    assert len(CATALOG_ENUMS) == 6  # the 5 enums that name steps or outcomes, and one status


def test_a_step_kind_the_catalog_does_not_know_fails_the_start(tmp_path: Path) -> None:
    schemas = schemas_with(
        tmp_path, PAYMENT_STEP_REQUESTED, "step",
        lambda f: enum_of(f)["symbols"].append("REVERSE"),
    )  # fmt: skip

    with pytest.raises(EventDeclarationError, match=r"PaymentStepRequested: enum field 'step'.*"
                       r"missing none, unknown \['REVERSE'\]"):  # fmt: skip
        check_against_schemas(schemas)
    with pytest.raises(SchemaFileError, match="REVERSE"):
        SchemaRegistry.from_dir(schemas)


def test_a_step_kind_missing_from_an_enum_fails_the_start(tmp_path: Path) -> None:
    schemas = schemas_with(
        tmp_path, PAYMENT_STEP_COMPLETED, "step",
        lambda f: enum_of(f)["symbols"].remove("EXPIRE"),
    )  # fmt: skip

    with pytest.raises(EventDeclarationError, match=r"missing \['EXPIRE'\], unknown none"):
        check_against_schemas(schemas)


def test_a_notified_outcome_missing_from_its_enum_fails_the_start(tmp_path: Path) -> None:
    schemas = schemas_with(
        tmp_path, PAYMENT_NOTIFIED, "outcome", lambda f: enum_of(f)["symbols"].remove("REFUSED")
    )

    with pytest.raises(EventDeclarationError, match=r"PaymentNotified: enum field 'outcome'"):
        check_against_schemas(schemas)


def test_a_delivery_status_the_catalog_does_not_know_fails_the_start(tmp_path: Path) -> None:
    schemas = schemas_with(
        tmp_path, PAYMENT_NOTIFIED, "delivery_status",
        lambda f: enum_of(f)["symbols"].append("PENDING"),
    )  # fmt: skip

    with pytest.raises(EventDeclarationError, match=r"unknown \['PENDING'\]"):
        check_against_schemas(schemas)


def test_a_catalog_field_that_is_no_enum_any_more_fails_the_start(tmp_path: Path) -> None:
    def to_string(f: dict[str, Any]) -> None:
        f["type"] = "string"

    schemas = schemas_with(tmp_path, PAYMENT_STEP_REQUESTED, "step", to_string)

    with pytest.raises(EventDeclarationError, match="field 'step' is no enum"):
        check_against_schemas(schemas)


def test_a_nullable_enum_is_checked_like_any_other(tmp_path: Path) -> None:
    def nullable_with_extra(f: dict[str, Any]) -> None:
        f["type"] = ["null", {**enum_of(f), "symbols": [*enum_of(f)["symbols"], "HOLD"]}]

    schemas = schemas_with(tmp_path, PAYMENT_STEP_REQUESTED, "step", nullable_with_extra)

    with pytest.raises(EventDeclarationError, match=r"unknown \['HOLD'\]"):
        check_against_schemas(schemas)


def test_a_new_enum_naming_step_kinds_must_be_declared_against_the_catalog(
    tmp_path: Path,
) -> None:
    target = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, target)
    path = target / PAYMENT_SETTLED.schema_file
    schema = json.loads(path.read_text())
    schema["fields"].append({
        "name": "next_step", "default": "CAPTURE",
        "type": {"type": "enum", "name": "NextStep", "symbols": ["CAPTURE", "VOID"]},
    })  # fmt: skip
    path.write_text(json.dumps(schema))

    with pytest.raises(EventDeclarationError, match="'next_step' names step kinds"):
        check_against_schemas(target)
