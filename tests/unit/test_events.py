"""Each event type is declared once, and its declaration must match its schema file."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest

from engine.config import Settings
from engine.events import (
    BY_TOPIC,
    EVENT_NAMESPACE,
    EVENTS,
    PAYMENT_INITIATED,
    PAYMENT_SETTLED,
    PAYMENT_VALIDATED,
    EventDeclarationError,
    carried_fields,
    check_against_schemas,
    derived_event_id,
    uuid5_text,
)
from engine.serialization import SchemaFileError, SchemaRegistry

SCHEMAS = Settings().schemas_dir


def copy_of_schemas(tmp_path: Path) -> Path:
    target = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, target)
    return target


def test_the_shipped_schemas_match_the_declarations() -> None:
    check_against_schemas(SCHEMAS)
    assert {e.topic_name for e in EVENTS.values()} == set(BY_TOPIC)


def test_every_event_is_keyed_by_its_payer_account_on_its_own_topic() -> None:
    record = {"payer_account": "007780000000000000000111"}
    assert PAYMENT_SETTLED.key(record) == b"007780000000000000000111"
    assert PAYMENT_SETTLED.topic(Settings(topic_prefix="t")) == "t.settled"


def test_a_schema_that_drops_the_key_field_is_refused_at_start_up(tmp_path: Path) -> None:
    schemas = copy_of_schemas(tmp_path)
    path = schemas / PAYMENT_SETTLED.schema_file
    schema = json.loads(path.read_text())
    schema["fields"] = [f for f in schema["fields"] if f["name"] != "payer_account"]
    path.write_text(json.dumps(schema))

    with pytest.raises(EventDeclarationError, match="PaymentSettled: key field 'payer_account'"):
        check_against_schemas(schemas)
    with pytest.raises(SchemaFileError, match="key field"):
        SchemaRegistry.from_dir(schemas)


def test_a_schema_file_without_a_declared_event_is_refused(tmp_path: Path) -> None:
    schemas = copy_of_schemas(tmp_path)
    (schemas / "payment_captured.avsc").write_text("{}")

    with pytest.raises(EventDeclarationError, match="payment_captured.avsc"):
        check_against_schemas(schemas)


def test_a_stage_carries_the_fields_both_schemas_define() -> None:
    carried = carried_fields(PAYMENT_INITIATED, PAYMENT_VALIDATED)
    assert "egov_service" in carried and "amount_minor" in carried
    assert "event_id" not in carried and "causation_event_id" not in carried
    assert "fee_minor" not in carried_fields(PAYMENT_VALIDATED, PAYMENT_SETTLED)


def test_derived_ids_are_the_rfc_4122_version_5_uuids_of_their_names() -> None:
    for name in ("a", "payment/PaymentSettled/", "é" * 40, ""):
        assert uuid5_text(EVENT_NAMESPACE, name) == str(uuid.uuid5(EVENT_NAMESPACE, name))
    assert derived_event_id("e1", "PaymentSettled") == str(
        uuid.uuid5(EVENT_NAMESPACE, "e1/PaymentSettled/")
    )
