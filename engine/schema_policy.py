"""Which writer schemas the switch approves: pure rules, each returning the reason it refuses.

A bank chooses among versions the switch approved; it never adds or replaces one. An
operator offers a schema (``sakk schemas approve FILE``); it is approved only if every
rule below passes, compared with the release's own (reader) schema of the same event:

======================  =============================================================
rule                    refuses
======================  =============================================================
check_text_size         a schema text over MAX_SCHEMA_TEXT_BYTES
check_parses            JSON that is not an Avro schema fastavro can parse
check_is_event_record   anything but a record named as a release event (full name)
check_fingerprint_free  a fingerprint (CRC-64-AVRO, 8 bytes on the wire) that an already
                        approved schema of another identity holds
check_no_recursion      a named type that refers to itself, directly or not
check_bounded_shape     nesting deeper than MAX_NESTING_DEPTH, more than MAX_FIELDS fields
check_no_zero_size_     an array or map whose item can encode in zero bytes (null, an
  collections           empty record, fixed of size 0, ...): a huge block count of such
                        items is read in no bytes at all
check_only_adds_        a removed field, a changed type or logical type of a field the
  optional_fields       release has, an added field that is not ``["null", ...]`` with
                        default null
======================  =============================================================

The identity of a schema is SHA-256 over its full JSON, normalised (sorted keys, no
whitespace, ``doc`` left out): unlike the fingerprint, which is taken over the Parsing
Canonical Form, it changes with logical types, names, namespaces, aliases, defaults,
order, symbols and sizes, so two schemas that decode differently never share an identity.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastavro import parse_schema

from engine.serialization import schema_fingerprint, schema_identity, schema_text

MAX_SCHEMA_TEXT_BYTES = 64 * 1024
MAX_NESTING_DEPTH = 8  # records, arrays, maps and unions inside one another
MAX_FIELDS = 256  # fields of every record the schema defines, together

PRIMITIVES = frozenset(("null", "boolean", "int", "long", "float", "double", "bytes", "string"))
_PRIMITIVE_MIN_BYTES = {"null": 0, "boolean": 1, "int": 1, "long": 1, "float": 4, "double": 8,
                        "bytes": 1, "string": 1}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Candidate:
    """A schema offered for approval, with what identifies it."""

    event_type: str
    text: str  # normalised JSON: what the ledger stores and the identity is taken over
    fingerprint: bytes
    identity: str


@dataclass(frozen=True, slots=True)
class Assessment:
    """The verdict on a candidate: refused (with the reason), new, or already approved."""

    candidate: Candidate | None
    refusal: str | None = None
    already_approved: bool = False

    @property
    def approvable(self) -> bool:
        return self.refusal is None and not self.already_approved


def assess(
    text: str, release: Mapping[str, Mapping[str, Any]], approved: Mapping[bytes, str]
) -> Assessment:
    """Judge ``text`` against the release schemas (event type -> schema) and the approved set.

    ``approved`` maps each approved fingerprint to its identity. Never raises on bad input.
    """
    refusal = check_text_size(text)
    if refusal:
        return Assessment(None, refusal)
    raw, refusal = _parse_json(text)
    if raw is None:
        return Assessment(None, refusal)
    refusal = check_parses(raw)
    if refusal:
        return Assessment(None, refusal)
    event_type, refusal = check_is_event_record(raw, release)
    if event_type is None:
        return Assessment(None, refusal)
    candidate = Candidate(
        event_type, schema_text(raw), schema_fingerprint(raw), schema_identity(raw)
    )
    if approved.get(candidate.fingerprint) == candidate.identity:
        return Assessment(candidate, already_approved=True)
    for rule in (
        check_fingerprint_free(candidate.fingerprint, candidate.identity, approved),
        check_no_recursion(raw),
        check_bounded_shape(raw),
        check_no_zero_size_collections(raw),
        check_only_adds_optional_fields(raw, release[event_type]),
    ):
        if rule:
            return Assessment(candidate, rule)
    return Assessment(candidate)


def decoding_hazard(raw: Mapping[str, Any]) -> str | None:
    """Why decoding under ``raw`` could hang or crash (recursion, depth, zero-size items)."""
    return (
        check_no_recursion(raw) or check_bounded_shape(raw) or check_no_zero_size_collections(raw)
    )


# --- the rules -------------------------------------------------------------------------------


def check_text_size(text: str) -> str | None:
    size = len(text.encode("utf-8"))
    if size > MAX_SCHEMA_TEXT_BYTES:
        return f"schema is {size} bytes, more than the {MAX_SCHEMA_TEXT_BYTES} allowed"
    return None


def _parse_json(text: str) -> tuple[dict[str, Any] | None, str | None]:
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return None, f"not JSON: {str(exc)[:200]}"
    if not isinstance(raw, dict):
        return None, f"not a record schema: a JSON {type(raw).__name__}"
    return raw, None


def check_parses(raw: Mapping[str, Any]) -> str | None:
    try:
        parse_schema(dict(raw), _write_hint=False)
    except RecursionError:
        return "not a valid Avro schema: nested too deeply"
    except Exception as exc:  # fastavro raises SchemaParseException, ValueError, KeyError, ...
        return f"not a valid Avro schema: {type(exc).__name__}: {str(exc)[:200]}"
    return None


def check_is_event_record(
    raw: Mapping[str, Any], release: Mapping[str, Mapping[str, Any]]
) -> tuple[str | None, str | None]:
    """The event type ``raw`` is a version of, else the reason it is none."""
    if raw.get("type") != "record":
        return None, f"a Sakk event schema is a record, not {raw.get('type')!r}"
    name = _full_name(str(raw.get("name", "")), raw.get("namespace"))
    for event_type, current in release.items():
        if name == _full_name(str(current["name"]), current.get("namespace")):
            return event_type, None
    return None, f"record {name!r} is not a Sakk event type"


def check_no_recursion(raw: Mapping[str, Any]) -> str | None:
    found = _Shape.of(raw).recursive
    return f"recursive type {found!r}: a named type may not contain itself" if found else None


def check_bounded_shape(raw: Mapping[str, Any]) -> str | None:
    shape = _Shape.of(raw)
    if shape.depth > MAX_NESTING_DEPTH:
        return f"nested {shape.depth} deep, more than the {MAX_NESTING_DEPTH} allowed"
    if shape.fields > MAX_FIELDS:
        return f"{shape.fields} fields, more than the {MAX_FIELDS} allowed"
    return None


def check_no_zero_size_collections(raw: Mapping[str, Any]) -> str | None:
    found = _Shape.of(raw).zero_size_collection
    if found:
        return f"{found} holds items that can encode in zero bytes"
    return None


def check_only_adds_optional_fields(
    raw: Mapping[str, Any], current: Mapping[str, Any]
) -> str | None:
    """A new version only adds ``["null", ...]`` fields with default null to the release's."""
    fields = {f.get("name"): f for f in raw.get("fields", []) if isinstance(f, dict)}
    for old in current["fields"]:
        new = fields.get(old["name"])
        if new is None:
            return f"field {old['name']!r} is removed"
        if _normal(_strip_docs(new["type"])) != _normal(_strip_docs(old["type"])):
            return f"field {old['name']!r} changes type or logical type"
    known = {f["name"] for f in current["fields"]}
    for name, field in fields.items():
        if name in known:
            continue
        kind = field.get("type")
        optional = isinstance(kind, list) and bool(kind) and kind[0] == "null"
        if not optional or "default" not in field or field["default"] is not None:
            return f'added field {name!r} must be optional: ["null", ...] with default null'
    return None


def check_fingerprint_free(
    fingerprint: bytes, identity: str, approved: Mapping[bytes, str]
) -> str | None:
    held = approved.get(fingerprint)
    if held is not None and held != identity:
        return (
            f"fingerprint {fingerprint.hex()} collides with an approved schema of another "
            f"identity ({held[:16]}...): a message could not tell them apart"
        )
    return None


# --- the shape of a schema -------------------------------------------------------------------


def _full_name(name: str, namespace: Any) -> str:
    if "." in name or not namespace:
        return name
    return f"{namespace}.{name}"


def _normal(node: Any) -> str:
    return json.dumps(node, sort_keys=True, separators=(",", ":"))


def _strip_docs(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_docs(v) for k, v in node.items() if k != "doc"}
    if isinstance(node, list):
        return [_strip_docs(v) for v in node]
    return node


class _Shape:
    """Depth, field count, recursion and zero-size collections of a parsed schema.

    Avro defines a named type before it is used, so a reference back to a type still
    being defined (an ancestor) is the only way to recurse. Depth and minimum size of a
    named type are remembered, so a type used many times is measured once.
    """

    def __init__(self) -> None:
        self.depth = 0
        self.fields = 0
        self.recursive: str | None = None
        self.zero_size_collection: str | None = None
        self._named: dict[str, tuple[int, int]] = {}  # full name -> (depth, min bytes)

    @classmethod
    def of(cls, raw: Mapping[str, Any]) -> _Shape:
        shape = cls()
        try:
            shape.depth, _ = shape._visit(raw, None, (), 0)
        except RecursionError:
            shape.depth = MAX_NESTING_DEPTH + 1
        return shape

    def _visit(
        self, node: Any, namespace: str | None, ancestors: tuple[str, ...], level: int
    ) -> tuple[int, int]:
        """(depth, minimum encoded bytes) of ``node``."""
        if level > MAX_NESTING_DEPTH:
            return level, 1  # deep enough to refuse: no need to look further
        if isinstance(node, str):
            return self._reference(node, namespace, ancestors)
        if isinstance(node, list):  # a union: the branch index, then one branch
            depth = 0
            for branch in node:
                d, _ = self._visit(branch, namespace, ancestors, level + 1)
                depth = max(depth, d)
            return depth + 1, 1
        if not isinstance(node, dict):
            return 0, 1
        kind = node.get("type")
        if kind in ("record", "error"):
            return self._record(node, namespace, ancestors, level)
        if kind == "enum":
            self._define(node, namespace, (0, 1))
            return 0, 1
        if kind == "fixed":
            size = node.get("size")
            self._define(node, namespace, (0, size if isinstance(size, int) else 1))
            return 0, size if isinstance(size, int) else 1
        if kind in ("array", "map"):
            item = node.get("items") if kind == "array" else node.get("values")
            depth, item_bytes = self._visit(item, namespace, ancestors, level + 1)
            if item_bytes <= 0 and self.zero_size_collection is None:
                self.zero_size_collection = f"{kind} of {_describe(item)}"
            return depth + 1, 1  # the terminating zero block count
        return self._visit(kind, namespace, ancestors, level) if kind is not None else (0, 1)

    def _record(
        self, node: Mapping[str, Any], namespace: str | None, ancestors: tuple[str, ...], level: int
    ) -> tuple[int, int]:
        name = _full_name(str(node.get("name", "")), node.get("namespace", namespace))
        inner = name.rsplit(".", 1)[0] if "." in name else None
        fields = node.get("fields") or []
        self.fields += len(fields)
        depth, size = 0, 0
        for field in fields:
            if not isinstance(field, dict):
                continue
            d, s = self._visit(field.get("type"), inner, (*ancestors, name), level + 1)
            depth, size = max(depth, d), size + s
        result = (depth + 1, size)
        self._named[name] = result
        return result

    def _define(
        self, node: Mapping[str, Any], namespace: str | None, result: tuple[int, int]
    ) -> None:
        name = _full_name(str(node.get("name", "")), node.get("namespace", namespace))
        self._named[name] = result

    def _reference(
        self, name: str, namespace: str | None, ancestors: tuple[str, ...]
    ) -> tuple[int, int]:
        if name in PRIMITIVES:
            return 0, _PRIMITIVE_MIN_BYTES[name]
        full = _full_name(name, namespace)
        short = {a.rsplit(".", 1)[-1] for a in ancestors}
        if full in ancestors or name in ancestors or name.rsplit(".", 1)[-1] in short:
            if self.recursive is None:
                self.recursive = full
            return 0, 1
        return self._named.get(full) or self._named.get(name) or (0, 1)


def _describe(node: Any) -> str:
    if isinstance(node, dict):
        return str(node.get("name") or node.get("type"))
    if isinstance(node, list):
        return "a union"
    return str(node)
