"""Hostile schemas and bodies, as a bank with its own key and produce rights can make them."""

from __future__ import annotations

import copy
import json
from typing import Any

from engine.config import Settings
from engine.ledger.schemas import ApprovedSchema
from engine.serialization import EVENT_TYPES, schema_fingerprint, schema_identity, schema_text

PAD_CHARS = 128  # free choices in the padding field's name: more than the CRC's 64 bits
PAIRS = [("a", "q"), ("b", "s"), ("c", "v"), ("d", "x"), ("e", "k"), ("f", "z"), ("g", "m")]


def release_initiated() -> dict[str, Any]:
    text = (Settings().schemas_dir / EVENT_TYPES["PaymentInitiated"]).read_text()
    return json.loads(text)


def swapped_accounts(schema: dict[str, Any]) -> dict[str, Any]:
    """The same byte layout with ``payer_account`` and ``payee_account`` read the other way."""
    swapped = copy.deepcopy(schema)
    names = [f["name"] for f in swapped["fields"]]
    i, j = names.index("payer_account"), names.index("payee_account")
    swapped["fields"][i]["name"], swapped["fields"][j]["name"] = "payee_account", "payer_account"
    return swapped


def with_colliding_pad(schema: dict[str, Any], target: bytes) -> dict[str, Any]:
    """``schema`` plus a ``null`` field (no bytes on the wire) named so its CRC-64 is ``target``.

    CRC-64-AVRO is affine over GF(2) in the bits of a message of fixed length: choose one
    of two characters per position of the name, and solve the 64 linear equations.
    """

    def fingerprint_of(choice: list[int]) -> int:
        name = "pad_" + "".join(PAIRS[i % len(PAIRS)][c] for i, c in enumerate(choice))
        padded = copy.deepcopy(schema)
        padded["fields"].append({"name": name, "type": "null"})
        return int.from_bytes(schema_fingerprint(padded), "little")

    base = fingerprint_of([0] * PAD_CHARS)
    columns = []
    for i in range(PAD_CHARS):
        flipped = [0] * PAD_CHARS
        flipped[i] = 1
        columns.append(fingerprint_of(flipped) ^ base)
    choice = _solve(columns, base ^ int.from_bytes(target, "little"))
    name = "pad_" + "".join(PAIRS[i % len(PAIRS)][c] for i, c in enumerate(choice))
    forged = copy.deepcopy(schema)
    forged["fields"].append({"name": name, "type": "null"})
    if schema_fingerprint(forged) != target:
        raise AssertionError("the forged schema does not collide")
    return forged


def _solve(columns: list[int], target: int) -> list[int]:
    """x with XOR of columns[i] for x[i] == 1 equal to target (Gaussian elimination, GF(2))."""
    pivots: dict[int, tuple[int, int]] = {}  # bit -> (vector, mask of columns making it)
    for i, column in enumerate(columns):
        vector, mask = column, 1 << i
        for bit in sorted(pivots, reverse=True):
            if vector >> bit & 1:
                pv, pm = pivots[bit]
                vector, mask = vector ^ pv, mask ^ pm
        if vector:
            pivots[vector.bit_length() - 1] = (vector, mask)
    vector, mask = target, 0
    for bit in sorted(pivots, reverse=True):
        if vector >> bit & 1:
            pv, pm = pivots[bit]
            vector, mask = vector ^ pv, mask ^ pm
    if vector:
        raise AssertionError("the padding's choices do not span the CRC's 64 bits")
    return [mask >> i & 1 for i in range(len(columns))]


def forged_swapped_initiated() -> dict[str, Any]:
    """Attack 1 of issue 18: accounts swapped, under the release PaymentInitiated fingerprint."""
    release = release_initiated()
    return with_colliding_pad(swapped_accounts(release), schema_fingerprint(release))


def micros_initiated() -> dict[str, Any]:
    """Attack 2: the release schema with ``occurred_at`` in microseconds: same fingerprint."""
    schema = release_initiated()
    for field in schema["fields"]:
        if field["name"] == "occurred_at":
            field["type"] = {"type": "long", "logicalType": "timestamp-micros"}
    return schema


def optional_field(name: str, kind: Any) -> dict[str, Any]:
    return {"name": name, "type": ["null", kind], "default": None}


def with_fields(schema: dict[str, Any], *fields: dict[str, Any]) -> dict[str, Any]:
    extended = copy.deepcopy(schema)
    extended["fields"].extend(fields)
    return extended


def recursive_initiated() -> dict[str, Any]:
    """Attack 4: a record whose field is ``["null", itself]``."""
    node = {"type": "record", "name": "Nest", "fields": [optional_field("inner", "Nest")]}
    return with_fields(release_initiated(), optional_field("nest", node))


def zigzag(n: int) -> bytes:
    """Avro's zig-zag varint of ``n``."""
    value = (n << 1) ^ (n >> 63)
    out = bytearray()
    while value & ~0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


class InMemoryApproved:
    """An approved set in memory, for the codec's unit tests (the ledger's is tested in
    tests/integration/test_approved_schemas.py)."""

    def __init__(self, *schemas: dict[str, Any]) -> None:
        self.rows = [
            ApprovedSchema(i + 1, schema_fingerprint(s), schema_identity(s), s["name"],
                           schema_text(s))
            for i, s in enumerate(schemas)
        ]  # fmt: skip

    def newest_id(self) -> int:
        return len(self.rows)

    def since(self, after_id: int) -> list[ApprovedSchema]:
        return self.rows[after_id:]
