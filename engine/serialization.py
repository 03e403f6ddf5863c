"""Avro single-object encoding of payment events; writer schemas are shared through Kafka.

Wire format (Avro spec, "Single object encoding"): the marker ``C3 01``, the 8-byte
little-endian CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form,
then the Avro binary body. A reader resolves the writer schema it finds by fingerprint
against its own (reader) schema of the same event type, so producers and consumers
upgrade independently.

Schemas travel in full (not in canonical form): the canonical form drops
``logicalType`` and fastavro applies logical types from the *writer* schema, so a
writer schema learned in canonical form would turn ``occurred_at`` back into an int.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol, cast

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from fastavro.schema import SchemaParseException, fingerprint, to_parsing_canonical_form
from fastavro.validation import ValidationError, validate
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from engine.config import Settings
from engine.events import EVENTS, EventDeclarationError, check_against_schemas
from engine.kafka.client import Outgoing, make_consumer, make_producer, partitions_of, send_all
from engine.kafka.client import schema_topic as schema_topic_of
from engine.kafka.exceptions import KafkaPlumbingError

log = logging.getLogger(__name__)

MARKER = b"\xc3\x01"
FINGERPRINT_BYTES = 8
HEADER_BYTES = len(MARKER) + FINGERPRINT_BYTES
FINGERPRINT_ALGORITHM = "CRC-64-AVRO"
DEFAULT_REFRESH_INTERVAL_S = 30.0
MAX_TRACKED_UNKNOWN_FINGERPRINTS = 1024  # bounds refreshes to this many per interval
DEFAULT_STORE_FETCH_TIMEOUT_S = 10.0
STORE_POLL_TIMEOUT_MS = 200

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
    """The schema store could not be read or written: an outage, not bad input."""


class DecodeError(SerializationError):
    """A message cannot be decoded; ``kind`` is the dead-letter reason."""

    kind = "undecodable"


class NotSingleObjectError(DecodeError):
    """The bytes do not start with the single-object marker and a fingerprint."""

    kind = "undecodable"


class UnknownSchemaError(DecodeError):
    """No known writer schema has this fingerprint, even after asking the store."""

    kind = "unknown_schema"

    def __init__(self, fingerprint: bytes, message: str) -> None:
        super().__init__(message)
        self.fingerprint = fingerprint


class IncompatibleSchemaError(UnknownSchemaError):
    """The writer schema is known but cannot be resolved against our reader schema."""


class UndecodableBodyError(DecodeError):
    """The Avro body is truncated, corrupt or followed by stray bytes."""

    kind = "undecodable"


class DecodedEvent(NamedTuple):
    """A decoded message: the event type, its record as the reader sees it, the writer's id."""

    event_type: str
    record: dict[str, Any]
    fingerprint: bytes


class WriterSchema(NamedTuple):
    """A known writer schema; ``event_type`` is None when it is not a Sakk event."""

    event_type: str | None
    schema: ParsedSchema
    text: str


class SchemaFetcher(Protocol):
    """Anything that returns every published writer schema (fingerprint -> schema JSON)."""

    def fetch_all(self) -> dict[bytes, str]: ...


def _schema_dict(schema: SchemaSource) -> dict[str, Any]:
    raw = json.loads(schema) if isinstance(schema, str) else dict(schema)
    if not isinstance(raw, dict):
        raise SchemaFileError(f"expected a JSON object schema, got {type(raw).__name__}")
    return raw


def schema_fingerprint(schema: SchemaSource) -> bytes:
    """The 8 wire bytes identifying a schema: CRC-64-AVRO of its canonical form, little-endian."""
    # fastavro's hex string is already the little-endian byte order the spec puts on the wire.
    canonical = to_parsing_canonical_form(_schema_dict(schema))
    return bytes.fromhex(fingerprint(canonical, FINGERPRINT_ALGORITHM))


def _schema_text(raw: Mapping[str, Any]) -> str:
    return json.dumps(raw, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _short_name(full_name: str) -> str:
    return full_name.rsplit(".", 1)[-1]


class SchemaRegistry:
    """Reader schemas of this process, plus every writer schema it has learned, by fingerprint."""

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
            self._reader_fingerprints[event_type] = self.add_writer_schema(raw)

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

    def add_writer_schema(self, schema: SchemaSource) -> bytes:
        """Learn a writer schema (e.g. a newer version) so its messages can be decoded."""
        raw = _schema_dict(schema)
        fp = schema_fingerprint(raw)
        if fp not in self._writers:
            parsed = cast(ParsedSchema, parse_schema(raw))
            full_name = parsed.get("name", "") if isinstance(parsed, dict) else ""
            event_type = self._event_type_by_name.get(full_name)
            self._writers[fp] = WriterSchema(event_type, parsed, _schema_text(raw))
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
    """Encodes records as single-object Avro and decodes them by the writer's fingerprint.

    Thread-safe for encode/decode: no buffer is shared between calls (measured: reusing
    one BytesIO is no faster than making one per call).
    """

    def __init__(
        self,
        registry: SchemaRegistry,
        store: SchemaFetcher | None = None,
        refresh_interval_s: float = DEFAULT_REFRESH_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if refresh_interval_s <= 0:
            raise ValueError(f"refresh_interval_s={refresh_interval_s} must be > 0")
        self.registry = registry
        self._store = store
        self._refresh_interval_s = refresh_interval_s
        self._clock = clock
        self._refreshed_at: dict[bytes, float] = {}
        self._write_plans = {
            et: _write_plan(registry.reader_schema(et), registry.fingerprint_of(et))
            for et in registry.event_types
        }
        self._read_plans: dict[bytes, _ReadPlan] = {}

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
        if writer is None and self._refresh_from_store(fp):
            writer = self.registry.writer_for(fp)
        if writer is None:
            where = "locally or in the schema store" if self._store else "locally (no store)"
            raise UnknownSchemaError(fp, f"writer schema fingerprint {fp.hex()} unknown {where}")
        if writer.event_type is None:
            name = writer.schema.get("name") if isinstance(writer.schema, dict) else writer.schema
            raise UnknownSchemaError(fp, f"writer schema {fp.hex()} is {name!r}, not a Sakk event")
        same = fp == self.registry.fingerprint_of(writer.event_type)
        reader = None if same else self.registry.reader_schema(writer.event_type)
        plan = _ReadPlan(writer.event_type, writer.schema, reader)
        self._read_plans[fp] = plan
        return plan

    def _refresh_from_store(self, fp: bytes) -> bool:
        """Learn every schema in the store, at most once per interval per unknown fingerprint."""
        if self._store is None:
            return False
        now = self._clock()
        last = self._refreshed_at.get(fp)
        if last is not None and now - last < self._refresh_interval_s:
            return False
        if len(self._refreshed_at) >= MAX_TRACKED_UNKNOWN_FINGERPRINTS:
            horizon = now - self._refresh_interval_s
            self._refreshed_at = {k: t for k, t in self._refreshed_at.items() if t > horizon}
            if len(self._refreshed_at) >= MAX_TRACKED_UNKNOWN_FINGERPRINTS:
                return False
        schemas = self._store.fetch_all()  # SchemaStoreError propagates: retry, don't dead-letter
        self._refreshed_at[fp] = now
        for key, text in schemas.items():
            self._learn(key, text)
        return self.registry.writer_for(fp) is not None

    def _learn(self, key: bytes, text: str) -> None:
        try:
            learned = self.registry.add_writer_schema(text)
        except Exception as exc:  # untrusted input: a bad entry must not stop decoding
            log.warning("schema store entry %s is not a valid schema: %s", key.hex(), exc)
            return
        if learned != key:
            log.warning(
                "schema store entry %s holds a schema of fingerprint %s", key.hex(), learned.hex()
            )


def _describe_not_single_object(data: bytes | None) -> str:
    if not data:
        return "empty message: not Avro single-object encoded"
    if len(data) < HEADER_BYTES:
        return f"{len(data)} bytes is shorter than the {HEADER_BYTES}-byte single-object header"
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


class KafkaSchemaStore:
    """Writer schemas kept in a Kafka topic (like Confluent's ``_schemas``): key fingerprint.

    Values are the full schema JSON (see the module docstring for why not canonical form).
    The topic itself is made by ``create_topics``; this class creates nothing.
    """

    def __init__(
        self,
        settings: Settings,
        client_id: str = "sakk-schema-store",
        fetch_timeout_s: float = DEFAULT_STORE_FETCH_TIMEOUT_S,
    ) -> None:
        if not 0 < fetch_timeout_s <= 600:
            raise ValueError(f"fetch_timeout_s={fetch_timeout_s} must be in (0, 600]")
        self.settings = settings
        self.topic = schema_topic_of(settings)
        self._client_id = client_id
        self._fetch_timeout_s = fetch_timeout_s
        self._producer: KafkaProducer | None = None
        self._published: set[bytes] = set()

    def publish(self, schema: SchemaSource) -> bytes:
        """Publish a writer schema once per process; readers find it by its fingerprint."""
        raw = _schema_dict(schema)
        fp = schema_fingerprint(raw)
        if fp in self._published:
            return fp
        message = Outgoing(self.topic, fp, _schema_text(raw).encode("utf-8"))
        try:
            if self._producer is None:
                self._require_topic()  # else the producer's first metadata request creates it
                self._producer = make_producer(self.settings, self._client_id)
            send_all(self._producer, [message], timeout_s=self.settings.produce_timeout_s)
        except (KafkaError, KafkaPlumbingError) as exc:
            raise SchemaStoreError(
                f"cannot publish schema {fp.hex()} to {self.topic}: {exc}"
            ) from exc
        self._published.add(fp)
        return fp

    def fetch_all(self) -> dict[bytes, str]:
        """Every schema in the topic, read from the beginning up to the end offsets of now."""
        with self._consumer() as consumer:
            return self._read_to_end(consumer)

    def _require_topic(self) -> None:
        with self._consumer() as consumer:
            if not partitions_of(consumer, self.topic):  # all-topics metadata: creates nothing
                raise SchemaStoreError(f"schema store topic {self.topic} does not exist")

    @contextmanager
    def _consumer(self) -> Iterator[KafkaConsumer]:
        """A group-less consumer: reading the store joins no group and commits nothing."""
        try:
            consumer = make_consumer(self.settings, group_id=None, client_id=self._client_id)
        except KafkaError as exc:
            raise SchemaStoreError(f"cannot reach the schema store {self.topic}: {exc}") from exc
        try:
            yield consumer
        except KafkaError as exc:
            raise SchemaStoreError(f"cannot read the schema store {self.topic}: {exc}") from exc
        finally:
            consumer.close(autocommit=False)

    def _read_to_end(self, consumer: KafkaConsumer) -> dict[bytes, str]:
        deadline = time.monotonic() + self._fetch_timeout_s
        partitions = partitions_of(consumer, self.topic)
        if not partitions:
            raise SchemaStoreError(f"schema store topic {self.topic} does not exist")
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions, timeout_ms=self._remaining_ms(deadline))
        schemas: dict[bytes, str] = {}
        pending = [tp for tp in partitions if self._behind(consumer, tp, ends[tp], deadline)]
        while pending:
            if time.monotonic() >= deadline:
                raise SchemaStoreError(
                    f"schema store {self.topic} not read to its end within "
                    f"{self._fetch_timeout_s:.0f}s"
                )
            batches = consumer.poll(
                timeout_ms=min(STORE_POLL_TIMEOUT_MS, self._remaining_ms(deadline))
            )
            for records in batches.values():
                for r in records:
                    if r.key is not None and len(r.key) == FINGERPRINT_BYTES and r.value:
                        schemas[bytes(r.key)] = r.value.decode("utf-8", errors="replace")
            pending = [tp for tp in pending if self._behind(consumer, tp, ends[tp], deadline)]
        return schemas

    def _behind(
        self, consumer: KafkaConsumer, tp: TopicPartition, end: int, deadline: float
    ) -> bool:
        position = consumer.position(tp, timeout_ms=self._remaining_ms(deadline))
        return position is None or position < end  # None: not known yet, keep polling

    @staticmethod
    def _remaining_ms(deadline: float) -> int:
        return max(1, int((deadline - time.monotonic()) * 1000))

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=self.settings.produce_timeout_s)
            self._producer = None


def register_current_schemas(
    codec_or_registry: AvroCodec | SchemaRegistry, store: KafkaSchemaStore
) -> list[bytes]:
    """Publish the schemas this process writes, so readers of any version can decode them."""
    registry = (
        codec_or_registry.registry
        if isinstance(codec_or_registry, AvroCodec)
        else codec_or_registry
    )
    published: list[bytes] = []
    for event_type in registry.event_types:
        writer = registry.writer_for(registry.fingerprint_of(event_type))
        if writer is None:  # the registry adds every reader schema as a writer schema
            raise SerializationError(f"current schema of {event_type} missing from the registry")
        published.append(store.publish(writer.text))
    return published
