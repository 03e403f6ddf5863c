"""Keyset paging: a page of at most ``MAX_PAGE`` rows and the cursor for the next one.

A list is ordered by a key that is unique (a time, then an id); the cursor is the
last row's key, so the next page starts strictly after it and rows written meanwhile
never shift a page. The cursor is opaque to the caller (URL-safe base64 of JSON,
naming the query it belongs to), which passes it back unchanged. Opaque is not
secret: a cursor holds its key in clear, so a list is ordered only by what every
audience of it may read (times, the switch's ids), never by an account number.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from engine.read.exceptions import CursorError, ReadError
from engine.times import as_utc

MAX_PAGE = 500  # rows a page holds at most: every list the read side serves
DEFAULT_PAGE = 100
MAX_CURSOR_CHARS = 512

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: tuple[T, ...]
    next_cursor: str | None  # None: this is the last page

    def __len__(self) -> int:
        return len(self.items)


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise ReadError(f"page of {limit} rows: expected 1..{MAX_PAGE}")
    return limit


def encode_cursor(query: str, key: Sequence[Any]) -> str:
    """The cursor after a row whose ordering key is ``key`` (times, strings, integers)."""
    parts = [{"t": as_utc(v).isoformat()} if isinstance(v, datetime) else v for v in key]
    raw = json.dumps([query, parts], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(query: str, cursor: str) -> tuple[Any, ...]:
    """The key a cursor of ``query`` holds; raises :class:`CursorError` for any other."""
    if len(cursor) > MAX_CURSOR_CHARS:
        raise CursorError(f"cursor longer than {MAX_CURSOR_CHARS} characters")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        name, parts = json.loads(raw)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise CursorError("cursor unreadable: pass back the one a page gave") from exc
    if name != query or not isinstance(parts, list):
        raise CursorError(f"cursor of another list: this one is {query}")
    return tuple(_key_part(p) for p in parts)


def _key_part(part: Any) -> Any:
    if isinstance(part, dict):
        try:
            return as_utc(datetime.fromisoformat(part["t"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CursorError("cursor unreadable: pass back the one a page gave") from exc
    if isinstance(part, str | int) and not isinstance(part, bool):
        return part
    raise CursorError("cursor unreadable: pass back the one a page gave")


def page_of(query: str, rows: Sequence[T], limit: int, key: Any) -> Page[T]:
    """A page from ``limit + 1`` fetched rows: the extra row only says another page exists."""
    if len(rows) <= limit:
        return Page(tuple(rows), None)
    shown = tuple(rows[:limit])
    return Page(shown, encode_cursor(query, key(shown[-1])))
