"""Dead letters as operators see them, and the ledger's record of putting them back.

Kafka-free like the whole ledger: ``engine.dlq.redrive`` produces, this module reads
and writes rows. A dead letter is redriven at most once: ``dead_letter_redrives`` holds
one row per dead letter (its unique key says so). The row is written REQUESTED before
anything is produced and PUBLISHED once the broker acknowledged the copy, so a second
redrive finds it and either does nothing (PUBLISHED) or sends the very same bytes again
(REQUESTED: the first attempt may or may not have reached the broker; the copy carries
the same event id, which every consumer deduplicates).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Select, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from engine.ledger.exceptions import DeadLetterNotFoundError
from engine.ledger.models import (
    DeadLetter,
    DeadLetterRedrive,
    EmittedEvent,
    HandledEvent,
    table_of,
)
from engine.ledger.queries import chunks

MAX_LISTED = 1_000  # dead letters one query returns; filters narrow the rest
MAX_REQUESTED_BY_CHARS = 64  # dead_letter_redrives.requested_by is String(64)
MAX_REASON_CHARS = 1_000


class RedriveStatus(enum.StrEnum):
    REQUESTED = "REQUESTED"  # written before the copy is produced
    PUBLISHED = "PUBLISHED"  # the broker acknowledged the copy


class BodySource(enum.StrEnum):
    ORIGINAL = "original"  # the bytes the consumer dead-lettered, as stored
    CORRECTED = "corrected"  # a body an operator supplied


def dead_letter_event_id(topic: str, partition: int, offset: int) -> str:
    """The id a consumer records for a message it dead-lettered: its source coordinates."""
    return f"dlq:{topic}:{partition}:{offset}"


@dataclass(frozen=True, slots=True)
class Redrive:
    """One dead letter put back in the flow (a row of ``dead_letter_redrives``)."""

    id: int
    dead_letter_id: int
    requested_by: str
    requested_at: datetime
    reason: str | None
    body_source: str
    target_topic: str
    key: bytes | None
    value: bytes
    payment_id: str | None
    event_id: str | None
    status: str
    published_partition: int | None
    published_offset: int | None
    published_at: datetime | None

    @property
    def published(self) -> bool:
        return self.status == RedriveStatus.PUBLISHED


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """A dead letter as recorded by the consumer that refused it, with its redrive if any."""

    id: int
    consumer: str
    source_topic: str
    source_partition: int
    source_offset: int
    kind: str
    reason: str
    payment_id: str | None
    recorded_at: datetime
    redrive: Redrive | None

    @property
    def event_id(self) -> str:
        return dead_letter_event_id(self.source_topic, self.source_partition, self.source_offset)


@dataclass(frozen=True, slots=True)
class StoredCopy:
    """The dead letter's bytes as the consumer stored them to produce on ``payments.dlq``."""

    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class RedriveRequest:
    """What an operator asked to send again, and as what: written before any produce."""

    dead_letter_id: int
    requested_by: str
    requested_at: datetime
    reason: str | None
    body_source: BodySource
    target_topic: str
    key: bytes | None
    value: bytes
    payment_id: str | None
    event_id: str | None

    def __post_init__(self) -> None:
        if not self.requested_by.strip():
            raise ValueError("a redrive names who asked for it (requested_by is empty)")
        if len(self.requested_by) > MAX_REQUESTED_BY_CHARS:
            raise ValueError(
                f"requested_by has {len(self.requested_by)} characters, "
                f"at most {MAX_REQUESTED_BY_CHARS}"
            )
        if self.reason is not None and len(self.reason) > MAX_REASON_CHARS:
            raise ValueError(
                f"the reason has {len(self.reason)} characters, at most {MAX_REASON_CHARS}"
            )


_DEAD = table_of(DeadLetter)
_REDRIVES = table_of(DeadLetterRedrive)


def _redrive_of(row: Any) -> Redrive | None:
    if row.redrive_id is None:
        return None
    return Redrive(
        id=row.redrive_id,
        dead_letter_id=row.id,
        requested_by=row.requested_by,
        requested_at=row.requested_at,
        reason=row.redrive_reason,
        body_source=row.body_source,
        target_topic=row.target_topic,
        key=row.key,
        value=row.value,
        payment_id=row.redrive_payment_id,
        event_id=row.event_id,
        status=row.status,
        published_partition=row.published_partition,
        published_offset=row.published_offset,
        published_at=row.published_at,
    )


def _record_of(row: Any) -> DeadLetterRecord:
    return DeadLetterRecord(
        id=row.id,
        consumer=row.consumer,
        source_topic=row.source_topic,
        source_partition=row.source_partition,
        source_offset=row.source_offset,
        kind=row.kind,
        reason=row.reason,
        payment_id=row.payment_id,
        recorded_at=row.recorded_at,
        redrive=_redrive_of(row),
    )


def _with_redrives() -> Select[Any]:
    d, r = _DEAD, _REDRIVES
    return select(
        d,
        r.c.id.label("redrive_id"),
        r.c.requested_by,
        r.c.requested_at,
        r.c.reason.label("redrive_reason"),
        r.c.body_source,
        r.c.target_topic,
        r.c.key,
        r.c.value,
        r.c.payment_id.label("redrive_payment_id"),
        r.c.event_id,
        r.c.status,
        r.c.published_partition,
        r.c.published_offset,
        r.c.published_at,
    ).join(r, r.c.dead_letter_id == d.c.id, isouter=True)


def _filtered(
    query: Select[Any], kind: str | None, consumer: str | None, since: datetime | None
) -> Select[Any]:
    d = _DEAD
    if kind is not None:
        query = query.where(d.c.kind == kind)
    if consumer is not None:
        query = query.where(d.c.consumer == consumer)
    if since is not None:
        query = query.where(d.c.recorded_at >= since)
    return query


def list_dead_letters(
    conn: Connection,
    kind: str | None = None,
    consumer: str | None = None,
    since: datetime | None = None,
    limit: int = MAX_LISTED,
) -> list[DeadLetterRecord]:
    """Dead letters matching every filter given, oldest first, at most ``limit``."""
    if not 1 <= limit <= MAX_LISTED:
        raise ValueError(f"limit={limit} must be in [1, {MAX_LISTED}]")
    query = _filtered(_with_redrives(), kind, consumer, since).order_by(_DEAD.c.id).limit(limit)
    return [_record_of(row) for row in conn.execute(query)]


def count_dead_letters(
    conn: Connection,
    kind: str | None = None,
    consumer: str | None = None,
    since: datetime | None = None,
) -> int:
    """How many dead letters match, so a listing can say how many it left out."""
    query = _filtered(select(func.count()).select_from(_DEAD), kind, consumer, since)
    return int(conn.execute(query).scalar_one())


def get_dead_letter(conn: Connection, dead_letter_id: int) -> DeadLetterRecord:
    row = conn.execute(_with_redrives().where(_DEAD.c.id == dead_letter_id)).first()
    if row is None:
        raise DeadLetterNotFoundError(f"no dead letter {dead_letter_id} in the ledger")
    return _record_of(row)


def dead_letters_to_redrive(conn: Connection, kind: str, limit: int) -> list[DeadLetterRecord]:
    """Dead letters of ``kind`` never redriven, or whose redrive was never acknowledged."""
    if not 1 <= limit <= MAX_LISTED:
        raise ValueError(f"limit={limit} must be in [1, {MAX_LISTED}]")
    r = _REDRIVES
    query = (
        _with_redrives()
        .where(_DEAD.c.kind == kind)
        .where((r.c.id.is_(None)) | (r.c.status == RedriveStatus.REQUESTED))
        .order_by(_DEAD.c.id)
        .limit(limit)
    )
    return [_record_of(row) for row in conn.execute(query)]


def stored_copy(conn: Connection, dead_letter: DeadLetterRecord) -> StoredCopy | None:
    """The bytes the consumer stored for the dead-letter topic (cut if they were too large)."""
    e = table_of(EmittedEvent)
    row = conn.execute(
        select(e.c.key, e.c.value)
        .where(e.c.consumer == dead_letter.consumer, e.c.source_event_id == dead_letter.event_id)
        .order_by(e.c.id)
        .limit(1)
    ).first()
    return None if row is None else StoredCopy(bytes(row.key or b""), bytes(row.value))


def find_redrive(conn: Connection, dead_letter_id: int) -> Redrive | None:
    return get_dead_letter(conn, dead_letter_id).redrive


def claim_redrive(
    engine: Engine,
    request: RedriveRequest,
    on_claim: Callable[[Connection], object] | None = None,
) -> tuple[Redrive, bool]:
    """Record the request as REQUESTED; or find the redrive already there and write nothing.

    Returns (the redrive, True when this call wrote it). The unique dead_letter_id
    decides between two operators racing: one insert wins, the other finds its row.
    ``on_claim`` writes in the same transaction (the operator's audit record).
    """
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(_REDRIVES).values(
                    dead_letter_id=request.dead_letter_id,
                    requested_by=request.requested_by,
                    requested_at=request.requested_at,
                    reason=request.reason,
                    body_source=str(request.body_source),
                    target_topic=request.target_topic,
                    key=request.key,
                    value=request.value,
                    payment_id=request.payment_id,
                    event_id=request.event_id,
                    status=str(RedriveStatus.REQUESTED),
                )
            )
            if on_claim is not None:
                on_claim(conn)
        created = True
    except IntegrityError:
        created = False
    with engine.connect() as conn:
        redrive = find_redrive(conn, request.dead_letter_id)
    if redrive is None:  # the insert failed for another reason than an existing redrive
        raise DeadLetterNotFoundError(
            f"dead letter {request.dead_letter_id} vanished while its redrive was recorded"
        )
    return redrive, created


def mark_published(
    engine: Engine, dead_letter_id: int, partition: int, offset: int, at: datetime
) -> Redrive:
    """PUBLISHED, with where the copy landed; a redrive already PUBLISHED keeps its first place."""
    r = _REDRIVES
    with engine.begin() as conn:
        conn.execute(
            update(r)
            .where(r.c.dead_letter_id == dead_letter_id, r.c.status == RedriveStatus.REQUESTED)
            .values(
                status=str(RedriveStatus.PUBLISHED),
                published_partition=partition,
                published_offset=offset,
                published_at=at,
            )
        )
        redrive = find_redrive(conn, dead_letter_id)
    if redrive is None:
        raise DeadLetterNotFoundError(f"dead letter {dead_letter_id} has no redrive to mark")
    return redrive


def resolved_dead_letter_ids(conn: Connection, consumer: str) -> set[int]:
    """Dead letters of ``consumer`` whose PUBLISHED redrive that consumer has handled.

    The copy is recognised by its event id when its body decoded, or by the id the
    consumer gives a message it dead-letters again (its published coordinates): either
    way the copy reached a result of its own, which is what counts from then on.
    """
    d, r = _DEAD, _REDRIVES
    rows = conn.execute(
        select(d.c.id, r.c.event_id, r.c.target_topic, r.c.published_partition,
               r.c.published_offset)
        .join(r, r.c.dead_letter_id == d.c.id)
        .where(d.c.consumer == consumer, r.c.status == RedriveStatus.PUBLISHED)
    ).all()  # fmt: skip
    wanted: dict[str, set[int]] = {}
    for row in rows:
        for event_id in _copy_event_ids(row):
            wanted.setdefault(event_id, set()).add(row.id)
    if not wanted:
        return set()
    h = table_of(HandledEvent)
    resolved: set[int] = set()
    for chunk in chunks(sorted(wanted)):
        handled = conn.execute(
            select(h.c.event_id).where(h.c.consumer == consumer, h.c.event_id.in_(chunk))
        ).scalars()
        for event_id in handled:
            resolved |= wanted[event_id]
    return resolved


def _copy_event_ids(row: Any) -> list[str]:
    ids = [] if row.event_id is None else [str(row.event_id)]
    if row.published_partition is not None and row.published_offset is not None:
        ids.append(
            dead_letter_event_id(row.target_topic, row.published_partition, row.published_offset)
        )
    return ids


def handled_outcome(conn: Connection, consumer: str, event_id: str) -> str | None:
    """What ``consumer`` did with ``event_id`` (``settled``, ``rejected``, ...), None if nothing."""
    h = table_of(HandledEvent)
    row = conn.execute(
        select(h.c.outcome).where(h.c.consumer == consumer, h.c.event_id == event_id)
    ).first()
    return None if row is None else str(row.outcome)
