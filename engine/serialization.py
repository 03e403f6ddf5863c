"""Avro single-object encoding of events, decoded only by writer schemas the switch approved.

Wire format (Avro spec, "Single object encoding"): the marker ``C3 01``, the 8-byte
little-endian CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form,
then the Avro binary body. A reader resolves the writer schema it finds by fingerprint
against its own (reader) schema of the same event type, so producers and consumers
upgrade independently.

The fingerprint only names a schema; it does not prove one. CRC-64 collisions can be
made, and the canonical form drops ``logicalType`` (which fastavro applies from the
*writer* schema). So the writer schemas a codec knows are the release's own (reader)
schemas plus those an operator approved (``approved_schemas`` in the ledger, which banks
cannot write; see ``engine.schema_policy``), each kept with its identity: SHA-256 over
its full normalised JSON, checked again when loaded. A fingerprint outside that set is
dead-lettered ``schema_not_approved``; nothing a bank publishes adds a schema.

Decoding is bounded: approved schemas are never recursive and are bounded in depth, and
a body under a schema with arrays or maps is scanned first (:class:`_BodyScan`), each
block count checked against the bytes that remain, before fastavro reads it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol, cast

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from fastavro.schema import SchemaParseException, fingerprint, to_parsing_canonical_form
from fastavro.validation import ValidationError, validate

from engine.events import EVENTS, EventDeclarationError, check_against_schemas

log = logging.getLogger(__name__)

MARKER = b"\xc3\x01"
CONFLUENT_MAGIC_BYTE = 0  # the first byte of the Confluent wire format, named in its refusal
FINGERPRINT_BYTES = 8
HEADER_BYTES = len(MARKER) + FINGERPRINT_BYTES
FINGERPRINT_ALGORITHM = "CRC-64-AVRO"
APPROVAL_CHECK_INTERVAL_S = 5.0  # at most one "newest approval?" query per interval
MAX_COLLECTION_ITEMS = 100_000  # array and map items in one message, all blocks together
MAX_VARINT_BYTES = 10  # a zig-zag long takes at most 10 bytes

EVENT_TYPES: Mapping[str, str] = MappingProxyType(
    {e.name: e.schema_file for e in EVENTS.values()}
)  # event type -> its schema file, as engine.events declares them

ParsedSchema = dict[str, Any]
SchemaSource = str | Mapping[str, Any]


class SerializationError(Exception):
    """Base of the errors raised by ``engine.serialization``."""


class SchemaFileError(SerializationError):
    """A schema file is missing, unparsable, or names another record than its event type."""


class UnknownEventTypeError(SerializationError, LookupError):
    """Asked to encode an event type the registry has no schema for."""


class SchemaValidationError(SerializationError, ValueError):
    """A record does not fit its schema; ``field`` names the field at fault."""

    def __init__(self, event_type: str, field: str, problem: str) -> None:
        super().__init__(f"{event_type}.{field}: {problem}")
        self.event_type = event_type
        self.field = field


class SchemaStoreError(SerializationError):
    """The approved schemas could not be read: an outage, not bad input (retry)."""


class SchemaConflictError(SerializationError):
    """A schema would take a fingerprint that a schema of another identity holds."""


class DecodeError(SerializationError):
    """A message cannot be decoded; ``kind`` is the dead-letter reason."""

    kind = "undecodable"


class NotSingleObjectError(DecodeError):
    """The bytes do not start with the single-object marker and a fingerprint."""

    kind = "undecodable"


class UnknownSchemaError(DecodeError):
    """The writer schema is approved but is no event this codec reads."""

    kind = "unknown_schema"

    def __init__(self, fingerprint: bytes, message: str) -> None:
        super().__init__(message)
        self.fingerprint = fingerprint


class SchemaNotApprovedError(UnknownSchemaError):
    """No approved writer schema has this fingerprint: the switch never approved it."""

    kind = "schema_not_approved"


class IncompatibleSchemaError(UnknownSchemaError):
    """The writer schema is known but cannot be resolved against our reader schema."""


class UndecodableBodyError(DecodeError):
    """The Avro body is truncated, corrupt, out of bounds or followed by stray bytes."""

    kind = "undecodable"


class DecodedEvent(NamedTuple):
    """A decoded message: the event type, its record as the reader sees it, the writer's id."""

    event_type: str
    record: dict[str, Any]
    fingerprint: bytes


class WriterSchema(NamedTuple):
    """An approved writer schema; ``event_type`` is None when this codec reads no such event."""

    event_type: str | None
    schema: ParsedSchema
    text: str
    identity: str
    raw: Mapping[str, Any]


class ApprovedSchema(NamedTuple):
    """A row of the approved set: ``id`` grows with every approval, nothing is ever changed."""

    id: int
    fingerprint: bytes
    identity: str
    event_type: str
    text: str


class ApprovedSchemaSource(Protocol):
    """Where the approved writer schemas live (the ledger: ``engine.ledger.schemas``)."""

    def newest_id(self) -> int: ...

    def since(self, after_id: int) -> list[ApprovedSchema]: ...


def _schema_dict(schema: SchemaSource) -> dict[str, Any]:
    raw = json.loads(schema) if isinstance(schema, str) else dict(schema)
    if not isinstance(raw, dict):
        raise SchemaFileError(f"expected a JSON object schema, got {type(raw).__name__}")
    return raw


def schema_fingerprint(schema: SchemaSource) -> bytes:
    """The 8 wire bytes naming a schema: CRC-64-AVRO of its canonical form, little-endian."""
    # fastavro's hex string is already the little-endian byte order the spec puts on the wire.
    canonical = to_parsing_canonical_form(_schema_dict(schema))
    return bytes.fromhex(fingerprint(canonical, FINGERPRINT_ALGORITHM))


def schema_text(schema: SchemaSource) -> str:
    """The normalised JSON of a schema: sorted keys, no whitespace, nothing dropped."""
    return json.dumps(
        _schema_dict(schema), separators=(",", ":"), sort_keys=True, ensure_ascii=False
    )


def schema_identity(schema: SchemaSource) -> str:
    """SHA-256 (hex) of :func:`schema_text` without ``doc``: differs whenever decoding could.

    Only documentation is left out (it never changes how bytes decode), so a release that
    reworded a doc still recognises the version an operator approved; a ``default`` value
    is kept whole, even a map with a ``doc`` key.
    """
    normal = json.dumps(
        _without_docs(_schema_dict(schema)),
        separators=(",", ":"), sort_keys=True, ensure_ascii=False,
    )  # fmt: skip
    return hashlib.sha256(normal.encode("utf-8")).hexdigest()


def _without_docs(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: v if k == "default" else _without_docs(v) for k, v in node.items() if k != "doc"}
    if isinstance(node, list):
        return [_without_docs(v) for v in node]
    return node


def read_release_schemas(path: Path | str) -> dict[str, str]:
    """Every ``*.avsc`` of this release (the reader schemas), by the record name it defines."""
    found: dict[str, str] = {}
    for file in sorted(Path(path).glob("*.avsc")):
        try:
            text = file.read_text(encoding="utf-8")
            name = _short_name(str(_schema_dict(text)["name"]))
        except (OSError, ValueError, KeyError, SchemaFileError) as exc:
            raise SchemaFileError(f"invalid schema file {file}: {exc}") from exc
        found[name] = text
    return found


def _short_name(full_name: str) -> str:
    return full_name.rsplit(".", 1)[-1]


class SchemaRegistry:
    """Reader schemas of this process, plus every approved writer schema, by fingerprint.

    The reader schemas are approved by being the release's own: they are writer schemas too.
    """

    def __init__(self, reader_schemas: Mapping[str, SchemaSource]) -> None:
        self._readers: dict[str, ParsedSchema] = {}
        self._reader_fingerprints: dict[str, bytes] = {}
        self._event_type_by_name: dict[str, str] = {}
        self._writers: dict[bytes, WriterSchema] = {}
        for event_type, source in reader_schemas.items():
            raw = _schema_dict(source)
            parsed = cast(ParsedSchema, parse_schema(raw))
            full_name = parsed.get("name", "")
            if _short_name(full_name) != event_type:
                raise SchemaFileError(f"schema for {event_type} defines record {full_name!r}")
            self._readers[event_type] = parsed
            self._event_type_by_name[full_name] = event_type
            self._reader_fingerprints[event_type] = self.add_approved(raw)

    @classmethod
    def from_dir(cls, path: Path | str) -> SchemaRegistry:
        """Load the current schema of every event type from ``path`` (``Settings.schemas_dir``)."""
        try:
            check_against_schemas(Path(path))
        except EventDeclarationError as exc:
            raise SchemaFileError(str(exc)) from exc
        sources: dict[str, str] = {}
        for event_type, file_name in EVENT_TYPES.items():
            file = Path(path) / file_name
            try:
                sources[event_type] = file.read_text(encoding="utf-8")
            except OSError as exc:
                raise SchemaFileError(f"cannot read schema {file}: {exc}") from exc
        try:
            return cls(sources)
        except (ValueError, TypeError, KeyError, SchemaParseException) as exc:
            raise SchemaFileError(f"invalid schema under {path}: {exc}") from exc

    @property
    def event_types(self) -> tuple[str, ...]:
        return tuple(self._readers)

    def reader_schema(self, event_type: str) -> ParsedSchema:
        """The parsed schema this process reads (and writes) ``event_type`` with."""
        try:
            return self._readers[event_type]
        except KeyError:
            raise UnknownEventTypeError(f"no schema for event type {event_type!r}") from None

    def fingerprint_of(self, event_type: str) -> bytes:
        """Fingerprint of the current schema of ``event_type``: what ``encode`` writes."""
        try:
            return self._reader_fingerprints[event_type]
        except KeyError:
            raise UnknownEventTypeError(f"no schema for event type {event_type!r}") from None

    def add_approved(self, schema: SchemaSource) -> bytes:
        """Decode messages of an approved writer schema; the caller vouches for the approval.

        Raises SchemaConflictError if its fingerprint names a schema of another identity.
        """
        raw = _schema_dict(schema)
        fp = schema_fingerprint(raw)
        identity = schema_identity(raw)
        known = self._writers.get(fp)
        if known is not None:
            if known.identity != identity:
                raise SchemaConflictError(
                    f"fingerprint {fp.hex()} already names a schema of identity "
                    f"{known.identity[:16]}..., not {identity[:16]}..."
                )
            return fp
        parsed = cast(ParsedSchema, parse_schema(raw))
        full_name = parsed.get("name", "") if isinstance(parsed, dict) else ""
        event_type = self._event_type_by_name.get(full_name)
        self._writers[fp] = WriterSchema(event_type, parsed, schema_text(raw), identity, raw)
        return fp

    def writer_for(self, fingerprint: bytes) -> WriterSchema | None:
        return self._writers.get(fingerprint)


class _WritePlan(NamedTuple):
    header: bytes
    schema: ParsedSchema
    int_fields: tuple[tuple[str, str], ...]  # (name, "int" or "long")
    timestamp_fields: tuple[str, ...]


class _ReadPlan(NamedTuple):
    event_type: str
    writer: ParsedSchema
    reader: ParsedSchema | None  # None when writer == reader: fastavro skips resolution
    scan: Callable[[_BodyScan], None] | None  # None when the schema has no array nor map


def _write_plan(schema: ParsedSchema, fp: bytes) -> _WritePlan:
    int_fields, timestamp_fields = [], []
    for f in schema["fields"]:
        kind = f["type"]
        if kind in ("int", "long"):
            int_fields.append((f["name"], kind))
        elif isinstance(kind, dict) and kind.get("logicalType", "").startswith("timestamp-"):
            timestamp_fields.append(f["name"])
    return _WritePlan(MARKER + fp, schema, tuple(int_fields), tuple(timestamp_fields))


class AvroCodec:
    """Encodes records as single-object Avro and decodes them by an approved writer schema.

    With ``approved`` (the ledger's approved set) the codec loads every approved schema at
    start; a fingerprint it does not know makes it ask for the newest approval id at most
    once per ``approval_check_interval_s``, and load only the rows approved since. So a
    flood of unknown fingerprints costs one cheap query per interval, never a reload.

    Thread-safe for encode/decode: no buffer is shared between calls (measured: reusing
    one BytesIO is no faster than making one per call).
    """

    def __init__(
        self,
        registry: SchemaRegistry,
        approved: ApprovedSchemaSource | None = None,
        approval_check_interval_s: float = APPROVAL_CHECK_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if approval_check_interval_s <= 0:
            raise ValueError(f"approval_check_interval_s={approval_check_interval_s} must be > 0")
        self.registry = registry
        self._approved = approved
        self._check_interval_s = approval_check_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._newest_loaded_id = 0
        self._checked_at_s: float | None = None
        self.approval_checks = 0  # "newest approval id?" queries made after the first load
        self._write_plans = {
            et: _write_plan(registry.reader_schema(et), registry.fingerprint_of(et))
            for et in registry.event_types
        }
        self._read_plans: dict[bytes, _ReadPlan] = {}
        if approved is not None:
            self._load(approved.since(0))

    def encode(self, event_type: str, record: Mapping[str, Any], validate: bool = False) -> bytes:
        """Single-object bytes of ``record``; ``validate`` checks every field first (slower)."""
        plan = self._write_plans.get(event_type)
        if plan is None:
            raise UnknownEventTypeError(f"no schema for event type {event_type!r}")
        # Always on: fastavro would silently truncate a float amount or read a naive
        # datetime in the host's local time zone.
        _check_ints_and_timestamps(event_type, plan, record)
        if validate:
            _validate(event_type, plan.schema, record)
        buffer = io.BytesIO()
        buffer.write(plan.header)
        try:
            schemaless_writer(buffer, plan.schema, record)
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
            _validate(event_type, plan.schema, record)  # slow path: find the field at fault
            raise SchemaValidationError(event_type, "?", f"cannot encode: {exc}") from exc
        return buffer.getvalue()

    def decode(self, data: bytes | None) -> DecodedEvent:
        """The event in ``data``, read as this process's reader schema of its event type."""
        if data is None or len(data) < HEADER_BYTES or data[:2] != MARKER:
            raise NotSingleObjectError(_describe_not_single_object(data))
        fp = bytes(data[2:HEADER_BYTES])
        plan = self._read_plans.get(fp) or self._read_plan(fp)
        if plan.scan is not None:
            _scan_body(plan, data, fp)
        fo = io.BytesIO(data)
        fo.seek(HEADER_BYTES)
        try:
            record = schemaless_reader(fo, plan.writer, plan.reader)
        except SchemaResolutionError as exc:
            raise IncompatibleSchemaError(
                fp, f"writer schema {fp.hex()} cannot be read as {plan.event_type}: {exc}"
            ) from exc
        except Exception as exc:  # fastavro raises EOFError, ValueError, IndexError, ...
            raise UndecodableBodyError(
                f"{plan.event_type} body ({len(data) - HEADER_BYTES} bytes, writer {fp.hex()}) "
                f"is truncated or corrupt: {type(exc).__name__}: {exc}"
            ) from exc
        if fo.tell() != len(data):
            raise UndecodableBodyError(
                f"{plan.event_type} body has {len(data) - fo.tell()} stray bytes after the record"
            )
        return DecodedEvent(plan.event_type, cast(dict[str, Any], record), fp)

    def _read_plan(self, fp: bytes) -> _ReadPlan:
        writer = self.registry.writer_for(fp)
        if writer is None and self._check_for_new_approvals():
            writer = self.registry.writer_for(fp)
        if writer is None:
            raise SchemaNotApprovedError(
                fp, f"writer schema fingerprint {fp.hex()} is not an approved schema"
            )
        if writer.event_type is None:
            name = writer.schema.get("name") if isinstance(writer.schema, dict) else writer.schema
            raise UnknownSchemaError(
                fp, f"writer schema {fp.hex()} is {name!r}, not an event read here"
            )
        same = fp == self.registry.fingerprint_of(writer.event_type)
        reader = None if same else self.registry.reader_schema(writer.event_type)
        try:
            scan = _compile_scan(writer.raw) if _has_collections(writer.raw) else None
        except (KeyError, TypeError, ValueError) as exc:  # never expected: approval parsed it
            raise UnknownSchemaError(
                fp, f"writer schema {fp.hex()} cannot be scanned: {exc}"
            ) from exc
        plan = _ReadPlan(writer.event_type, writer.schema, reader, scan)
        self._read_plans[fp] = plan
        return plan

    def _check_for_new_approvals(self) -> bool:
        """Load approvals made since the last load; at most one query per interval."""
        if self._approved is None:
            return False
        with self._lock:
            now = self._clock()
            if self._checked_at_s is not None and now - self._checked_at_s < self._check_interval_s:
                return False
            self._checked_at_s = now
            self.approval_checks += 1
            newest = self._approved.newest_id()  # SchemaStoreError propagates: retry
            if newest <= self._newest_loaded_id:
                return False
            self._load(self._approved.since(self._newest_loaded_id))
            return True

    def _load(self, rows: list[ApprovedSchema]) -> None:
        for row in rows:
            self._newest_loaded_id = max(self._newest_loaded_id, row.id)
            problem = _problem_with(row)
            if problem is None:
                try:
                    self.registry.add_approved(row.text)
                except (
                    SchemaConflictError,
                    SchemaParseException,
                    ValueError,
                    KeyError,
                    TypeError,
                ) as exc:
                    problem = str(exc)
            if problem is not None:  # its messages are dead-lettered schema_not_approved
                log.error(
                    "approved schema #%d (%s) not used: %s", row.id, row.fingerprint.hex(), problem
                )


def _problem_with(row: ApprovedSchema) -> str | None:
    """Why a stored row must not be used: it does not hash to what it claims, or is unsafe."""
    from engine.schema_policy import decoding_hazard  # the policy imports this module

    try:
        raw = _schema_dict(row.text)
    except (ValueError, SchemaFileError) as exc:
        return f"not a schema: {exc}"
    if schema_identity(raw) != row.identity:
        return "its text does not hash to its identity"
    if schema_fingerprint(raw) != row.fingerprint:
        return "its text does not have its fingerprint"
    return decoding_hazard(raw)


# --- bounded decoding: a scan of the body before fastavro reads it ----------------------------


class _BodyScan:
    """A cursor over a message body that never reads past its end."""

    __slots__ = ("data", "pos", "items")

    def __init__(self, data: bytes, pos: int) -> None:
        self.data = data
        self.pos = pos
        self.items = 0

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def skip(self, n: int) -> None:
        if n < 0 or n > len(self.data) - self.pos:
            raise UndecodableBodyError(f"{n} bytes wanted at {self.pos}, {self.remaining()} left")
        self.pos += n

    def long(self) -> int:
        data, pos, result, shift = self.data, self.pos, 0, 0
        for _ in range(MAX_VARINT_BYTES):
            if pos >= len(data):
                raise UndecodableBodyError(f"varint cut at byte {pos}")
            b = data[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                self.pos = pos
                return (result >> 1) ^ -(result & 1)
            shift += 7
        raise UndecodableBodyError(f"varint longer than {MAX_VARINT_BYTES} bytes at {self.pos}")


def _scan_body(plan: _ReadPlan, data: bytes, fp: bytes) -> None:
    scan = _BodyScan(bytes(data), HEADER_BYTES)
    if plan.scan is not None:
        try:
            plan.scan(scan)
        except UndecodableBodyError as exc:
            raise UndecodableBodyError(
                f"{plan.event_type} body (writer {fp.hex()}) is out of bounds: {exc}"
            ) from exc


def _has_collections(node: Any) -> bool:
    if isinstance(node, dict):
        return node.get("type") in ("array", "map") or any(
            _has_collections(v)
            for k, v in node.items()
            if k in ("type", "items", "values", "fields")
        )
    if isinstance(node, list):
        return any(_has_collections(v) for v in node)
    return False


_Step = Callable[[_BodyScan], None]
_FIXED_BYTES = {"boolean": 1, "float": 4, "double": 8}


def _compile_scan(raw: Mapping[str, Any]) -> _Step:
    """A step per type, reading exactly what fastavro will read; named types compiled once."""
    named: dict[str, _Step] = {}

    def full(name: str, namespace: str | None) -> str:
        return name if "." in name or not namespace else f"{namespace}.{name}"

    def compile_node(node: Any, namespace: str | None) -> _Step:
        if isinstance(node, str):
            if node == "null":
                return lambda s: None
            if node in _FIXED_BYTES:
                size = _FIXED_BYTES[node]
                return lambda s: s.skip(size)
            if node in ("int", "long"):
                return _varint
            if node in ("bytes", "string"):
                return lambda s: s.skip(s.long())
            return named.get(full(node, namespace)) or named[node]
        if isinstance(node, list):
            branches = [compile_node(b, namespace) for b in node]
            return lambda s: _union(s, branches)
        kind = node["type"]
        if kind in ("record", "error"):
            name = full(node["name"], node.get("namespace", namespace))
            inner = name.rsplit(".", 1)[0] if "." in name else None
            steps: list[_Step] = []
            named[name] = lambda s: _fields(s, steps)
            steps.extend(compile_node(f["type"], inner) for f in node["fields"])
            return named[name]
        if kind == "enum":
            name = full(node["name"], node.get("namespace", namespace))
            count = len(node["symbols"])
            named[name] = lambda s: _enum(s, count)
            return named[name]
        if kind == "fixed":
            name = full(node["name"], node.get("namespace", namespace))
            size = int(node["size"])
            named[name] = lambda s: s.skip(size)
            return named[name]
        if kind == "array":
            item = compile_node(node["items"], namespace)
            return lambda s: _blocks(s, item)
        if kind == "map":
            value = compile_node(node["values"], namespace)
            return lambda s: _blocks(s, lambda t: _map_entry(t, value))
        return compile_node(kind, namespace)

    return compile_node(dict(raw), None)


def _varint(scan: _BodyScan) -> None:
    scan.long()


def _fields(scan: _BodyScan, steps: list[_Step]) -> None:
    for step in steps:
        step(scan)


def _map_entry(scan: _BodyScan, value: _Step) -> None:
    scan.skip(scan.long())  # the key
    value(scan)


def _enum(scan: _BodyScan, count: int) -> None:
    _index(scan, count)


def _index(scan: _BodyScan, count: int) -> int:
    i = scan.long()
    if not 0 <= i < count:
        raise UndecodableBodyError(f"index {i} out of 0..{count - 1}")
    return i


def _union(scan: _BodyScan, branches: list[_Step]) -> None:
    branches[_index(scan, len(branches))](scan)


def _blocks(scan: _BodyScan, item: _Step) -> None:
    """Array or map blocks: each count checked against the bytes left, items bounded in all."""
    while True:
        count = scan.long()
        if count == 0:
            return
        if count < 0:
            count = -count
            size = scan.long()
            if size < 0 or size > scan.remaining():
                raise UndecodableBodyError(f"block of {size} bytes, {scan.remaining()} left")
        if count > scan.remaining():  # every item takes a byte at least (zero-size refused)
            raise UndecodableBodyError(f"block of {count} items, {scan.remaining()} bytes left")
        scan.items += count
        if scan.items > MAX_COLLECTION_ITEMS:
            raise UndecodableBodyError(f"more than {MAX_COLLECTION_ITEMS} items")
        for _ in range(count):
            start = scan.pos
            item(scan)
            if scan.pos == start:
                raise UndecodableBodyError("an item of zero bytes")


def _describe_not_single_object(data: bytes | None) -> str:
    if not data:
        return "empty message: not Avro single-object encoded"
    if len(data) < HEADER_BYTES:
        return f"{len(data)} bytes is shorter than the {HEADER_BYTES}-byte single-object header"
    if data[0] == CONFLUENT_MAGIC_BYTE:
        return (
            f"marker {bytes(data[:2]).hex()}: the Confluent wire format (magic byte 0 and a "
            f"registry id), not Avro single-object encoding ({MARKER.hex()} and the schema's "
            "fingerprint): see docs/banks.md"
        )
    return f"marker {bytes(data[:2]).hex()} is not the single-object marker {MARKER.hex()}"


def _check_ints_and_timestamps(
    event_type: str, plan: _WritePlan, record: Mapping[str, Any]
) -> None:
    for name, kind in plan.int_fields:
        value = record.get(name)
        if type(value) is not int:  # bool and float are refused: money is exact
            if name not in record:
                raise SchemaValidationError(event_type, name, "missing and has no default")
            raise SchemaValidationError(
                event_type, name, f"got {type(value).__name__}, expected {kind}"
            )
    for name in plan.timestamp_fields:
        value = record.get(name)
        if not isinstance(value, datetime) or value.utcoffset() is None:
            got = "naive datetime" if isinstance(value, datetime) else type(value).__name__
            raise SchemaValidationError(
                event_type, name, f"got {got}, expected a timezone-aware datetime"
            )


def _validate(event_type: str, schema: ParsedSchema, record: Mapping[str, Any]) -> None:
    """Raise SchemaValidationError naming the first field that does not fit ``schema``."""
    fields = schema["fields"]
    for f in fields:
        if f["name"] not in record and "default" not in f:
            raise SchemaValidationError(event_type, f["name"], "missing and has no default")
    unknown = sorted(set(record) - {f["name"] for f in fields})
    if unknown:
        raise SchemaValidationError(event_type, unknown[0], "not a field of the schema")
    try:
        validate(record, schema, strict=True)
    except ValidationError as exc:
        first = exc.errors[0]  # a union reports one error per branch, all for one field
        expected = [_type_name(e.schema) for e in exc.errors if e.field == first.field]
        field = str(first.field).removeprefix(schema["name"] + ".") or "?"
        # The value is left out on purpose: it may be an account number.
        raise SchemaValidationError(
            event_type,
            field,
            f"got {type(first.datum).__name__}, expected {' or '.join(expected)}",
        ) from exc


def _type_name(schema: Any) -> str:
    if isinstance(schema, dict):
        if schema.get("type") == "enum":
            return f"one of {', '.join(schema['symbols'])}"
        return str(schema.get("logicalType") or schema.get("type"))
    if isinstance(schema, list):
        return " or ".join(_type_name(s) for s in schema)
    return str(schema)
