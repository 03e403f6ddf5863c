"""Bounded decoding: no body under an approved schema can hang, crash or exhaust the decoder."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from engine.config import Settings
from engine.serialization import (
    HEADER_BYTES,
    MARKER,
    MAX_COLLECTION_ITEMS,
    AvroCodec,
    SchemaNotApprovedError,
    SchemaRegistry,
    UndecodableBodyError,
    read_release_schemas,
    schema_fingerprint,
)
from tests.schema_attacks import (
    InMemoryApproved,
    optional_field,
    release_initiated,
    with_fields,
    zigzag,
)

DECODE_BOUND_S = 1.0  # a refused body is refused at once, whatever count it claims


def codec_with(*schemas: dict[str, Any]) -> AvroCodec:
    return AvroCodec(SchemaRegistry.from_dir(Settings().schemas_dir), InMemoryApproved(*schemas))


def release_body() -> bytes:
    """A valid PaymentInitiated body with every optional field null (the new ones appended)."""
    from tests.unit.test_serialization import RECORDS

    codec = AvroCodec(SchemaRegistry.from_dir(Settings().schemas_dir))
    return codec.encode("PaymentInitiated", RECORDS["PaymentInitiated"])[HEADER_BYTES:]


def message(schema: dict[str, Any], tail: bytes) -> bytes:
    """The release body, then ``tail`` for the fields ``schema`` adds (each a union)."""
    return MARKER + schema_fingerprint(schema) + release_body() + tail


TAGS = with_fields(
    release_initiated(), optional_field("tags", {"type": "array", "items": "string"})
)
LIMITS = with_fields(
    release_initiated(), optional_field("limits", {"type": "map", "values": "long"})
)
NULLS = with_fields(
    release_initiated(), optional_field("nulls", {"type": "array", "items": "null"})
)


def assert_refused_at_once(codec: AvroCodec, data: bytes, match: str) -> None:
    started = time.monotonic()
    with pytest.raises(UndecodableBodyError, match=match):
        codec.decode(data)
    assert time.monotonic() - started < DECODE_BOUND_S


def test_an_array_that_decodes_is_read_in_full() -> None:
    data = message(TAGS, zigzag(1) + zigzag(2) + zigzag(1) + b"a" + zigzag(1) + b"b" + zigzag(0))
    assert codec_with(TAGS).decode(data).event_type == "PaymentInitiated"


def test_a_block_count_of_2_62_is_refused_against_the_bytes_left() -> None:
    data = message(TAGS, zigzag(1) + zigzag(2**62) + zigzag(1) + b"a")
    assert_refused_at_once(codec_with(TAGS), data, "block of 4611686018427387904 items")


def test_a_negative_block_count_with_a_byte_size_past_the_end_is_refused() -> None:
    data = message(TAGS, zigzag(1) + zigzag(-3) + zigzag(10**12) + b"\x02a")
    assert_refused_at_once(codec_with(TAGS), data, "block of 1000000000000 bytes")


def test_a_string_longer_than_the_bytes_left_is_refused() -> None:
    data = message(TAGS, zigzag(1) + zigzag(1) + zigzag(2**40) + b"abc" + zigzag(0))
    assert_refused_at_once(codec_with(TAGS), data, "bytes wanted")


def test_more_items_than_the_bound_in_all_blocks_are_refused() -> None:
    block = zigzag(1000) + (zigzag(1) + b"k" + zigzag(7)) * 1000  # key "k", value 7
    tail = zigzag(1) + block * (MAX_COLLECTION_ITEMS // 1000 + 1) + zigzag(0)
    assert_refused_at_once(codec_with(LIMITS), message(LIMITS, tail), "more than 100000 items")


def test_a_map_count_past_the_end_is_refused() -> None:
    data = message(LIMITS, zigzag(1) + zigzag(2**62))
    assert_refused_at_once(codec_with(LIMITS), data, "items")


def test_an_array_of_null_slipped_into_the_approved_set_is_not_used() -> None:
    data = message(NULLS, zigzag(1) + zigzag(2**62) + zigzag(0))
    with pytest.raises(SchemaNotApprovedError):
        codec_with(NULLS).decode(data)


def test_the_release_schemas_need_no_scan_so_the_common_path_pays_nothing() -> None:
    codec = AvroCodec(SchemaRegistry.from_dir(Settings().schemas_dir))
    for event_type in codec.registry.event_types:
        fp = codec.registry.fingerprint_of(event_type)
        assert codec._read_plan(fp).scan is None, event_type


# Written by the switch alone, read from topics no bank may write: a window's close
# (positions and chain heads) and its lifecycle moves (the instruction ids).
SWITCH_WRITTEN = frozenset({"SettlementWindowClosed", "SettlementWindowChanged"})


def test_every_release_schema_is_free_of_arrays_and_maps() -> None:
    for name, text in read_release_schemas(Settings().schemas_dir).items():
        if name in SWITCH_WRITTEN:  # the switch's own events: no bank writes their bytes
            continue
        assert '"array"' not in text and '"map"' not in text, name
    assert json.loads(read_release_schemas(Settings().schemas_dir)["PaymentInitiated"])
