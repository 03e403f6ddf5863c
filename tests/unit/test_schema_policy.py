"""The approval policy, rule by rule: each attempt to break it is refused with its reason."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from engine.config import Settings
from engine.schema_policy import (
    MAX_FIELDS,
    MAX_NESTING_DEPTH,
    MAX_SCHEMA_TEXT_BYTES,
    Assessment,
    assess,
    check_bounded_shape,
    check_fingerprint_free,
    check_is_event_record,
    check_no_recursion,
    check_no_zero_size_collections,
    check_only_adds_optional_fields,
    check_parses,
    check_text_size,
)
from engine.serialization import read_release_schemas, schema_fingerprint, schema_identity
from tests.schema_attacks import forged_swapped_initiated, swapped_accounts

RELEASE: dict[str, dict[str, Any]] = {
    name: json.loads(text) for name, text in read_release_schemas(Settings().schemas_dir).items()
}


def initiated(*added: dict[str, Any]) -> dict[str, Any]:
    schema = copy.deepcopy(RELEASE["PaymentInitiated"])
    schema["fields"].extend(added)
    return schema


def optional(name: str, kind: Any) -> dict[str, Any]:
    return {"name": name, "type": ["null", kind], "default": None}


def field_of(schema: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in schema["fields"] if f["name"] == name)


def judged(schema: dict[str, Any] | str, approved: dict[bytes, str] | None = None) -> Assessment:
    text = schema if isinstance(schema, str) else json.dumps(schema)
    return assess(text, RELEASE, approved or {})


def release_approved() -> dict[bytes, str]:
    return {schema_fingerprint(s): schema_identity(s) for s in RELEASE.values()}


def test_a_version_that_adds_an_optional_field_with_a_default_is_approvable() -> None:
    verdict = judged(initiated(optional("device_id", "string")), release_approved())
    assert verdict.approvable and verdict.candidate is not None
    assert verdict.candidate.event_type == "PaymentInitiated"


def test_the_release_schema_itself_is_already_approved() -> None:
    verdict = judged(RELEASE["PaymentInitiated"], release_approved())
    assert verdict.already_approved and verdict.refusal is None


def test_a_schema_text_over_the_size_bound_is_refused() -> None:
    assert "more than the" in (check_text_size(" " * (MAX_SCHEMA_TEXT_BYTES + 1)) or "")
    assert judged(" " * (MAX_SCHEMA_TEXT_BYTES + 1)).refusal is not None


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '"string"', "{" * 100_000])
def test_text_that_is_not_a_record_schema_is_refused(text: str) -> None:
    assert judged(text).refusal


def test_a_schema_fastavro_cannot_parse_is_refused() -> None:
    assert "not a valid Avro schema" in (check_parses({"type": "record", "fields": [1]}) or "")


def test_a_record_that_is_no_sakk_event_is_refused() -> None:
    other = {"type": "record", "name": "Other", "namespace": "ma.sakk.payments", "fields": []}
    assert "not a Sakk event type" in (judged(other).refusal or "")
    assert check_is_event_record({"type": "enum", "name": "X", "symbols": []}, RELEASE)[0] is None


def test_an_event_name_in_another_namespace_is_refused() -> None:
    moved = initiated()
    moved["namespace"] = "evil.bank"
    assert "not a Sakk event type" in (judged(moved).refusal or "")


def test_a_recursive_type_is_refused() -> None:
    node = {"type": "record", "name": "Node", "fields": [optional("next", "Node")]}
    schema = initiated(optional("chain", node))
    assert "recursive type" in (check_no_recursion(schema) or "")
    assert "recursive type" in (judged(schema).refusal or "")


def test_a_recursion_through_another_record_is_refused() -> None:
    inner = {"type": "record", "name": "B", "fields": [optional("a", "A")]}
    outer = {"type": "record", "name": "A", "fields": [{"name": "b", "type": inner}]}
    assert "recursive type" in (judged(initiated(optional("a", outer))).refusal or "")


def test_a_named_type_used_twice_without_recursion_is_approvable() -> None:
    money = {"type": "record", "name": "Money", "fields": [{"name": "minor", "type": "long"}]}
    schema = initiated(optional("fee", money), optional("tip", "Money"))
    assert judged(schema).approvable


def test_nesting_deeper_than_the_bound_is_refused() -> None:
    kind: Any = "string"
    for _ in range(MAX_NESTING_DEPTH + 1):
        kind = {"type": "array", "items": kind}
    assert "nested" in (check_bounded_shape(initiated(optional("deep", kind))) or "")


def test_more_fields_than_the_bound_are_refused() -> None:
    many = [optional(f"f{i}", "string") for i in range(MAX_FIELDS)]
    assert "fields, more than" in (check_bounded_shape(initiated(*many)) or "")


@pytest.mark.parametrize(
    "item",
    [
        "null",
        {"type": "record", "name": "Empty", "fields": []},
        {"type": "fixed", "name": "Nothing", "size": 0},
        {"type": "record", "name": "Nulls", "fields": [{"name": "n", "type": "null"}]},
    ],
)
def test_a_collection_of_items_that_encode_in_zero_bytes_is_refused(item: Any) -> None:
    for kind in ({"type": "array", "items": item}, {"type": "map", "values": item}):
        schema = initiated(optional("zeros", kind))
        assert "zero bytes" in (check_no_zero_size_collections(schema) or "")
        assert "zero bytes" in (judged(schema).refusal or "")


def test_a_collection_of_items_of_a_byte_or_more_is_approvable() -> None:
    schema = initiated(optional("tags", {"type": "array", "items": "string"}))
    assert check_no_zero_size_collections(schema) is None and judged(schema).approvable


def test_a_removed_field_is_refused() -> None:
    schema = initiated()
    schema["fields"] = [f for f in schema["fields"] if f["name"] != "remittance_info"]
    assert "'remittance_info' is removed" in (judged(schema).refusal or "")


def test_a_changed_type_is_refused() -> None:
    schema = initiated()
    field_of(schema, "amount_minor")["type"] = "int"
    assert "'amount_minor' changes type" in (judged(schema).refusal or "")


def test_a_changed_logical_type_is_refused() -> None:
    schema = initiated()
    field_of(schema, "occurred_at")["type"] = {"type": "long", "logicalType": "timestamp-micros"}
    reason = check_only_adds_optional_fields(schema, RELEASE["PaymentInitiated"])
    assert "'occurred_at' changes type or logical type" in (reason or "")


def test_swapped_accounts_forged_under_the_release_fingerprint_are_refused_as_a_collision() -> None:
    forged = forged_swapped_initiated()
    assert schema_fingerprint(forged) == schema_fingerprint(RELEASE["PaymentInitiated"])
    verdict = judged(forged, release_approved())
    assert verdict.refusal and "collides with an approved schema" in verdict.refusal


def test_swapped_accounts_under_their_own_fingerprint_are_only_a_reordering() -> None:
    # Resolution is by name: a writer of this order is read as it meant.
    assert judged(swapped_accounts(RELEASE["PaymentInitiated"]), release_approved()).approvable


def test_changed_enum_symbols_are_refused() -> None:
    schema = initiated()
    channel = field_of(schema, "channel")["type"]
    channel["symbols"] = list(reversed(channel["symbols"]))
    assert "'channel' changes type" in (judged(schema).refusal or "")


@pytest.mark.parametrize(
    "added",
    [
        {"name": "device_id", "type": "string"},
        {"name": "device_id", "type": ["null", "string"]},
        {"name": "device_id", "type": ["string", "null"], "default": "x"},
        {"name": "device_id", "type": ["null", "string"], "default": "x"},
    ],
)
def test_an_added_field_that_is_not_optional_with_default_null_is_refused(
    added: dict[str, Any],
) -> None:
    assert "must be optional" in (judged(initiated(added)).refusal or "")


def test_a_fingerprint_held_by_another_identity_is_refused_with_a_clear_error() -> None:
    micros = initiated()
    field_of(micros, "occurred_at")["type"] = {"type": "long", "logicalType": "timestamp-micros"}
    fp = schema_fingerprint(micros)
    assert fp == schema_fingerprint(RELEASE["PaymentInitiated"])  # canonical form drops it
    assert schema_identity(micros) != schema_identity(RELEASE["PaymentInitiated"])
    reason = check_fingerprint_free(fp, schema_identity(micros), release_approved())
    assert reason and "collides with an approved schema of another identity" in reason


def test_a_collision_with_an_approved_evolved_version_is_refused() -> None:
    v2 = initiated(optional("device_id", "string"))
    approved = {**release_approved(), schema_fingerprint(v2): schema_identity(v2)}
    twin = initiated(optional("device_id", "string"))
    field_of(twin, "device_id")["aliases"] = ["terminal"]  # the same canonical form
    verdict = judged(twin, approved)
    assert verdict.refusal and "collides" in verdict.refusal


def test_identity_changes_with_everything_that_changes_decoding() -> None:
    base = initiated(optional("device_id", "string"))
    variants = []
    for change in ("logical", "alias", "default", "order", "namespace", "size"):
        v = copy.deepcopy(base)
        if change == "logical":
            field_of(v, "occurred_at")["type"]["logicalType"] = "timestamp-micros"
        elif change == "alias":
            field_of(v, "device_id")["aliases"] = ["terminal"]
        elif change == "default":
            field_of(v, "amount_minor")["default"] = 0
        elif change == "order":
            v["fields"] = list(reversed(v["fields"]))
        elif change == "namespace":
            v["namespace"] = "other"
        else:
            v["fields"].append(optional("pad", {"type": "fixed", "name": "Pad", "size": 3}))
        variants.append(schema_identity(v))
    assert len({schema_identity(base), *variants}) == len(variants) + 1


def test_identity_ignores_documentation_but_not_a_default_with_a_doc_key() -> None:
    base = initiated(optional("device_id", "string"))
    reworded = copy.deepcopy(base)
    reworded["doc"] = "reworded"
    field_of(reworded, "amount_minor")["doc"] = "reworded too"
    assert schema_identity(reworded) == schema_identity(base)
    a = initiated({"name": "m", "type": {"type": "map", "values": "int"}, "default": {"doc": 1}})
    b = initiated({"name": "m", "type": {"type": "map", "values": "int"}, "default": {}})
    assert schema_identity(a) != schema_identity(b)
