"""Instants given on the command line: ISO 8601, UTC unless a zone is written."""

from __future__ import annotations

from datetime import UTC, datetime

from engine.audit.exceptions import AuditError


def parse_instant(text: str) -> datetime:
    """``2026-11-26``, ``2026-11-26T09:30``, ``2026-11-26T09:30:00+01:00`` -> aware UTC datetime.

    A time without a zone is UTC: the ledger's settlement windows are UTC days.
    """
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise AuditError(f"{text!r} is not an ISO 8601 date or time") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def to_ms(moment: datetime) -> int:
    """Milliseconds since the epoch, as Kafka record timestamps are."""
    return int(moment.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def as_utc(moment: datetime) -> datetime:
    """A time read back from the ledger as aware UTC (SQLite returns naive UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
