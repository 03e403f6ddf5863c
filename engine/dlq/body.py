"""A corrected message from a file: the event's fields as JSON, or the message's Avro bytes.

A file that starts with the single-object marker (``C3 01``) is the message itself,
as a bank's publisher would produce it. Any other file is one JSON object holding the
event's fields as its schema names them: integers for amounts (minor units), ISO 8601
with a UTC offset for times (``2026-11-26T09:30:15.123Z``), ``null`` for an absent
optional field. JSON is encoded with this process's writer schema, every field checked.

The event type is always the source topic's (``payments.initiated`` holds
PaymentInitiated): a correction never changes what a topic carries. Either way the
body must decode as every consumer will decode it, or it is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.dlq.exceptions import CorrectedBodyError
from engine.events import BY_TOPIC, ON_TOPIC
from engine.serialization import MARKER, AvroCodec, DecodeError, SerializationError

TIMESTAMP_TYPES = ("timestamp-millis", "timestamp-micros")


@dataclass(frozen=True, slots=True)
class CorrectedBody:
    """Bytes ready to produce, and the event they decode to."""

    value: bytes
    event_type: str
    record: dict[str, Any]


def event_types_of_topic(topic: str) -> tuple[str, ...]:
    """Every event type a Sakk topic carries, from its short name after the prefix, the
    topic's first declared type first (payments.initiated: payments, then steps)."""
    short = topic.rsplit(".", 1)[-1]
    if short not in BY_TOPIC:
        raise CorrectedBodyError(f"topic {topic} carries no Sakk event type a body could have")
    return tuple(e.name for e in ON_TOPIC[short])


def read_body_file(path: Path, max_bytes: int) -> bytes:
    """The file's bytes; refused beyond ``max_bytes`` (for a body: what the broker takes)."""
    try:
        with path.open("rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise CorrectedBodyError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(data) > max_bytes:
        raise CorrectedBodyError(f"{path} is larger than {max_bytes:,} bytes, the most it may hold")
    if not data.strip():
        raise CorrectedBodyError(f"{path} is empty")
    return data


def corrected_body(codec: AvroCodec, topic: str, data: bytes) -> CorrectedBody:
    """``data`` (Avro bytes or JSON fields) as a message of ``topic``'s event type."""
    carried = event_types_of_topic(topic)
    value = data if data.startswith(MARKER) else _encode_json(codec, carried, data)
    try:
        decoded = codec.decode(value)
    except DecodeError as exc:
        raise CorrectedBodyError(f"the corrected body does not decode: {exc}") from exc
    if decoded.event_type not in carried:
        raise CorrectedBodyError(
            f"the corrected body is a {decoded.event_type}; {topic} carries {' or '.join(carried)}"
        )
    return CorrectedBody(value, decoded.event_type, decoded.record)


def _encode_json(codec: AvroCodec, carried: tuple[str, ...], data: bytes) -> bytes:
    try:
        fields = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CorrectedBodyError(f"the corrected body is not UTF-8 (byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise CorrectedBodyError(
            f"the corrected body is neither Avro (no C3 01 marker) nor JSON: "
            f"{exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    if not isinstance(fields, dict):
        raise CorrectedBodyError(
            f"the corrected body must be one JSON object of {' or '.join(carried)}'s fields, "
            f"not a {type(fields).__name__}"
        )
    event_type = _type_of_fields(codec, carried, fields)
    record = record_from_json(codec, event_type, fields)
    try:
        return codec.encode(event_type, record, validate=True)
    except SerializationError as exc:
        raise CorrectedBodyError(f"the corrected body is not a valid {event_type}: {exc}") from exc


def _type_of_fields(codec: AvroCodec, carried: tuple[str, ...], fields: dict[str, Any]) -> str:
    """The event type among ``carried`` whose schema has every field the JSON names."""
    for event_type in carried:
        names = {f["name"] for f in codec.registry.reader_schema(event_type)["fields"]}
        if fields.keys() <= names:
            return event_type
    return carried[0]  # its validation names the field that does not belong


def record_from_json(codec: AvroCodec, event_type: str, fields: dict[str, Any]) -> dict[str, Any]:
    """JSON values as Avro wants them: ISO 8601 times become aware datetimes, the rest as is."""
    schema = codec.registry.reader_schema(event_type)
    record = dict(fields)
    for name in timestamp_fields(schema):
        value = record.get(name)
        if isinstance(value, str):
            record[name] = parse_time(name, value)
    return record


def timestamp_fields(schema: dict[str, Any]) -> list[str]:
    """Names of the record's fields that hold a timestamp (alone or in a union)."""
    return [f["name"] for f in schema["fields"] if _is_timestamp(f["type"])]


def _is_timestamp(field_type: Any) -> bool:
    if isinstance(field_type, list):
        return any(_is_timestamp(branch) for branch in field_type)
    return isinstance(field_type, dict) and field_type.get("logicalType") in TIMESTAMP_TYPES


def parse_time(name: str, value: str) -> datetime:
    """An ISO 8601 time with its offset, as UTC; without an offset it is ambiguous: refused."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise CorrectedBodyError(f"{name}: {value[:40]!r} is not an ISO 8601 time") from exc
    if moment.utcoffset() is None:
        raise CorrectedBodyError(f"{name}: {value[:40]!r} has no UTC offset (add Z or +01:00)")
    return moment.astimezone(UTC)
