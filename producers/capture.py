"""What a bank would send, written down: one Kafka message per JSON line.

``sakk publish --capture FILE`` writes each message exactly as it goes to the broker
(after signing), so ``sakk conformance FILE`` can check it without the switch. One line:

    {"topic": "payments.initiated", "key": "<base64>", "value": "<base64>",
     "headers": [{"name": "sakk.signer", "value": "<base64>"}, ...]}

``key`` is null for a message without a key. Bytes are standard base64 (RFC 4648, with
padding), so the file carries any value byte for byte.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

MAX_CAPTURE_LINE_BYTES = 4 * 1024 * 1024  # a message of SAKK_MAX_MESSAGE_BYTES in base64 fits


class CaptureFormatError(ValueError):
    """A capture line that is not a captured message (the reason says which part)."""


@dataclass(frozen=True)
class CapturedMessage:
    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "key": None if self.key is None else _b64(self.key),
            "value": _b64(self.value),
            "headers": [{"name": name, "value": _b64(value)} for name, value in self.headers],
        }


class CaptureWriter:
    """Appends captured messages to an open text file, one JSON object per line."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out
        self.written = 0

    def write(
        self, topic: str, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]]
    ) -> None:
        message = CapturedMessage(topic, key, value, tuple(headers))
        self._out.write(json.dumps(message.as_json(), separators=(",", ":")) + "\n")
        self.written += 1


def parse_captured(text: str) -> CapturedMessage:
    """One capture line as a message; raises CaptureFormatError naming the part at fault."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CaptureFormatError(f"not JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(data, dict):
        raise CaptureFormatError(f"expected a JSON object, got {type(data).__name__}")
    topic = data.get("topic")
    if not isinstance(topic, str) or not topic:
        raise CaptureFormatError("topic: expected a topic name")
    key = None if data.get("key") is None else _unb64("key", data["key"])
    value = _unb64("value", data.get("value"))
    headers = data.get("headers", [])
    if not isinstance(headers, list):
        raise CaptureFormatError("headers: expected a list of {name, value}")
    pairs = []
    for i, header in enumerate(headers):
        if not isinstance(header, dict) or not isinstance(header.get("name"), str):
            raise CaptureFormatError(f"headers[{i}]: expected {{name, value}}")
        pairs.append((header["name"], _unb64(f"headers[{i}].value", header.get("value"))))
    return CapturedMessage(topic, key, value, tuple(pairs))


def looks_like_capture(first_line: str) -> bool:
    """Whether a JSON Lines file is a capture (its first object has ``value`` and ``topic``)."""
    try:
        data = json.loads(first_line)
    except json.JSONDecodeError:
        return False
    return isinstance(data, dict) and "value" in data and "topic" in data


def read_captured(lines: Iterator[tuple[int, str]]) -> Iterator[tuple[int, CapturedMessage | str]]:
    """(line number, message or the reason it is not one) for each non-blank line."""
    for number, text in lines:
        if not text.strip():
            continue
        try:
            yield number, parse_captured(text)
        except CaptureFormatError as exc:
            yield number, str(exc)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(name: str, text: object) -> bytes:
    if not isinstance(text, str):
        raise CaptureFormatError(f"{name}: expected base64 text")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise CaptureFormatError(f"{name}: not base64") from None
