"""Fuzz: random bodies under every approved schema, random schemas offered for approval.

A body either decodes or raises a DecodeError (a dead letter with its reason): never
another exception, never a hang (each example has a deadline), never a crash (the test
process would die). A schema offered for approval is approved or refused with a reason,
and an approved one decodes random bodies under the same rule.
"""

from __future__ import annotations

import contextlib
import json
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config import Settings
from engine.schema_policy import assess
from engine.serialization import (
    HEADER_BYTES,
    MARKER,
    AvroCodec,
    DecodeError,
    SchemaRegistry,
    read_release_schemas,
    schema_fingerprint,
    schema_identity,
)
from tests.schema_attacks import (
    InMemoryApproved,
    optional_field,
    release_initiated,
    with_fields,
    zigzag,
)

EXAMPLES_PER_SCHEMA = 300  # bodies tried under each approved schema
SCHEMA_EXAMPLES = 300  # random schemas offered for approval
DEADLINE = timedelta(milliseconds=500)  # per example: a decoder that loops fails the test
FUZZ = settings(
    max_examples=EXAMPLES_PER_SCHEMA,
    deadline=DEADLINE,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,  # the same examples every run: a failure is reproducible
)

RELEASE = {k: json.loads(v) for k, v in read_release_schemas(Settings().schemas_dir).items()}
POINT = {"type": "record", "name": "Point", "fields": [
    {"name": "x", "type": "long"}, {"name": "label", "type": ["null", "string"]}]}  # fmt: skip
INTS = {"type": "array", "items": "int"}
EVOLVED = {
    "tags": with_fields(
        release_initiated(), optional_field("tags", {"type": "array", "items": "string"})
    ),
    "limits": with_fields(
        release_initiated(), optional_field("limits", {"type": "map", "values": "long"})
    ),
    "points": with_fields(
        release_initiated(),
        optional_field("points", {"type": "array", "items": ["null", POINT, INTS]}),
        optional_field("grid", {"type": "map", "values": {"type": "array", "items": "double"}}),
    ),
}


CODEC = AvroCodec(
    SchemaRegistry.from_dir(Settings().schemas_dir), InMemoryApproved(*EVOLVED.values())
)
WINDOW_CODEC = AvroCodec(
    SchemaRegistry({"SettlementWindowClosed": RELEASE["SettlementWindowClosed"]})
)
ALL_SCHEMAS = {**{f"release:{k}": v for k, v in RELEASE.items()}, **EVOLVED}


def codec_for(name: str) -> AvroCodec:
    return WINDOW_CODEC if name == "release:SettlementWindowClosed" else CODEC


def prefix_of(name: str) -> bytes:
    """A valid start of a body under the schema: the release PaymentInitiated's body."""
    if not name.startswith("release:PaymentInitiated") and name not in EVOLVED:
        return b""
    from tests.unit.test_serialization import RECORDS

    encoded = AvroCodec(SchemaRegistry.from_dir(Settings().schemas_dir)).encode(
        "PaymentInitiated", RECORDS["PaymentInitiated"]
    )
    return encoded[HEADER_BYTES:]


VARINTS = st.one_of(
    st.integers(-(2**63), 2**63 - 1), st.sampled_from([0, 1, -1, 2**62, -(2**62), 2**31])
).map(zigzag)
TAILS = st.lists(st.one_of(VARINTS, st.binary(max_size=16)), max_size=24).map(b"".join)


def assert_decodes_or_dead_letters(codec: AvroCodec, data: bytes) -> None:
    with contextlib.suppress(DecodeError):  # what a consumer dead-letters with its reason
        codec.decode(data)


@pytest.mark.parametrize("name", sorted(ALL_SCHEMAS))
def test_random_bodies_under_each_approved_schema_decode_or_are_dead_lettered(name: str) -> None:
    header = MARKER + schema_fingerprint(ALL_SCHEMAS[name])
    prefix = prefix_of(name)

    @FUZZ
    @given(st.one_of(st.binary(max_size=2048), TAILS.map(lambda t: prefix + t)))
    def check(body: bytes) -> None:
        assert_decodes_or_dead_letters(codec_for(name), header + body)

    check()


# --- random schemas offered for approval (a small grammar) --------------------------------

NAMES = ["A", "B", "C"]
PRIMITIVE = st.sampled_from(
    ["null", "boolean", "int", "long", "float", "double", "bytes", "string"]
)
LOGICAL = st.sampled_from([
    {"type": "long", "logicalType": "timestamp-millis"},
    {"type": "long", "logicalType": "timestamp-micros"},
    {"type": "int", "logicalType": "date"},
    {"type": "string", "logicalType": "uuid"},
    {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2},
])  # fmt: skip
REFERENCE = st.sampled_from(NAMES)  # may name an enclosing record: recursion
LEAF = st.one_of(
    PRIMITIVE,
    LOGICAL,
    REFERENCE,
    st.integers(0, 3).map(lambda n: {"type": "fixed", "name": f"F{n}", "size": n}),
)


def _compound(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    field = st.tuples(st.sampled_from(["a", "b", "c", "d"]), inner).map(
        lambda t: {"name": t[0], "type": t[1]}
    )
    record = st.tuples(
        st.sampled_from(NAMES), st.lists(field, max_size=3, unique_by=lambda f: f["name"])
    ).map(lambda t: {"type": "record", "name": t[0], "fields": t[1]})
    return st.one_of(
        record,
        st.lists(inner, min_size=1, max_size=3),
        inner.map(lambda t: {"type": "array", "items": t}),
        inner.map(lambda t: {"type": "map", "values": t}),
    )


TYPES = st.recursive(LEAF, _compound, max_leaves=12)


def _added_optional(kind: Any) -> dict[str, Any]:
    return with_fields(
        release_initiated(), {"name": "extra", "type": ["null", kind], "default": None}
    )


def _added_required(kind: Any) -> dict[str, Any]:
    return with_fields(release_initiated(), {"name": "extra", "type": kind})


def _replaced(kind: Any) -> dict[str, Any]:
    return {"type": "record", "name": "PaymentInitiated", "namespace": "ma.sakk.payments",
            "fields": [{"name": "x", "type": kind}]}  # fmt: skip


OFFERED = st.one_of(TYPES.map(_added_optional), TYPES.map(_added_required), TYPES.map(_replaced))
APPROVED = {schema_fingerprint(s): schema_identity(s) for s in RELEASE.values()}


@settings(max_examples=SCHEMA_EXAMPLES, deadline=DEADLINE, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(OFFERED, st.lists(TAILS, min_size=1, max_size=5))
def test_random_schemas_are_approved_or_refused_with_a_reason_and_approved_ones_decode_safely(
    schema: dict[str, Any], tails: list[bytes]
) -> None:
    verdict = assess(json.dumps(schema), RELEASE, APPROVED)
    if verdict.refusal is not None:
        assert verdict.refusal.strip()
        return
    assert verdict.candidate is not None
    codec = AvroCodec(SchemaRegistry.from_dir(Settings().schemas_dir), InMemoryApproved(schema))
    header = MARKER + verdict.candidate.fingerprint
    for tail in tails:
        assert_decodes_or_dead_letters(codec, header + prefix_of("release:PaymentInitiated") + tail)
