"""Dead letters: listed and read (a bank: those of payments it sent), redriven unchanged.

A redrive with a corrected body moves money or trust on a bank's behalf: it needs four
eyes (``/api/v1/proposals``). Sent again as stored, it is one operator's action.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from engine.ledger.dead_letters import DeadLetterRecord
from engine.read.dead_letters import (
    DeadLetterFilter,
    count_dead_letters,
    get_dead_letter,
    list_dead_letters,
)
from sakk.console.api.common import REASON_CHARS, Cursor, Instant, Limit, Out, reading
from sakk.console.auth import Principal, require_any, require_operator, require_reader
from sakk.console.errors import ConsoleError, ErrorBody

router = APIRouter(tags=["dead letters"])
DeadLetterId = Annotated[int, Path(ge=1, le=2**62)]


class RedriveOut(Out):
    status: str
    requested_by: str
    requested_at: datetime
    reason: str | None
    body_source: str
    target_topic: str
    published_partition: int | None
    published_offset: int | None
    published_at: datetime | None


class DeadLetterOut(Out):
    id: int
    consumer: str
    source_topic: str
    source_partition: int
    source_offset: int
    kind: str
    reason: str
    payment_id: str | None
    recorded_at: datetime
    redrive: RedriveOut | None  # never its bytes


class DeadLetterPage(Out):
    items: list[DeadLetterOut]
    next_cursor: str | None
    total: int


def _out(d: DeadLetterRecord) -> DeadLetterOut:
    redrive = None if d.redrive is None else _out_redrive(d.redrive)
    return DeadLetterOut(
        id=d.id, consumer=d.consumer, source_topic=d.source_topic,
        source_partition=d.source_partition, source_offset=d.source_offset, kind=d.kind,
        reason=d.reason, payment_id=d.payment_id, recorded_at=d.recorded_at, redrive=redrive,
    )  # fmt: skip


@router.get("/dead-letters", response_model=DeadLetterPage, summary="Dead letters, oldest first")
def search(
    request: Request,
    who: Annotated[Principal, Depends(require_any)],
    kind: Annotated[str | None, Query(min_length=1, max_length=32)] = None,
    consumer: Annotated[str | None, Query(min_length=1, max_length=32)] = None,
    since: Instant | None = None,
    cursor: Cursor = None,
    limit: Limit = 100,
) -> DeadLetterPage:
    which = DeadLetterFilter(kind, consumer, since)
    with reading(request) as conn:
        page = list_dead_letters(conn, who.audience, which, cursor, limit)
        total = count_dead_letters(conn, who.audience, which)
    return DeadLetterPage(
        items=[_out(d) for d in page.items], next_cursor=page.next_cursor, total=total
    )


@router.get("/dead-letters/{dead_letter_id}", response_model=DeadLetterOut, summary="One")
def one(
    request: Request,
    dead_letter_id: DeadLetterId,
    who: Annotated[Principal, Depends(require_any)],
) -> DeadLetterOut:
    with reading(request) as conn:
        return _out(get_dead_letter(conn, who.audience, dead_letter_id))


class RedriveIn(BaseModel):
    reason: str | None = Field(default=None, max_length=REASON_CHARS)
    force: bool = False  # also a poison or corrupt_batch dead letter, as stored


class RedriveDone(Out):
    dead_letter_id: int
    sent: bool
    resent: bool
    summary: str
    redrive: RedriveOut


@router.post(
    "/dead-letters/{dead_letter_id}/redrive", response_model=RedriveDone,
    summary="Send a dead letter again as stored (a corrected body: propose it)",
    responses={
        409: {"model": ErrorBody, "description": "Refused (its kind, already handled, ...)"},
        503: {"model": ErrorBody, "description": "No broker configured for this console"},
    },
)  # fmt: skip
def redrive(
    request: Request,
    dead_letter_id: DeadLetterId,
    body: RedriveIn,
    who: Annotated[Principal, Depends(require_operator)],
) -> RedriveDone:
    with reading(request) as conn:
        get_dead_letter(conn, who.audience, dead_letter_id)  # 404 when there is none
    outcome = _redrive(request, dead_letter_id, who.name, body)
    return RedriveDone(
        dead_letter_id=dead_letter_id, sent=outcome.sent, resent=outcome.resent,
        summary=outcome.summary, redrive=_out_redrive(outcome.redrive),
    )  # fmt: skip


def _out_redrive(r: Any) -> RedriveOut:
    return RedriveOut(
        status=str(r.status), requested_by=r.requested_by, requested_at=r.requested_at,
        reason=r.reason, body_source=str(r.body_source), target_topic=r.target_topic,
        published_partition=r.published_partition, published_offset=r.published_offset,
        published_at=r.published_at,
    )  # fmt: skip


def _redrive(request: Request, dead_letter_id: int, by: str, body: RedriveIn) -> Any:
    from engine.dlq.exceptions import RedriveError
    from engine.dlq.redrive import Redriver
    from engine.kafka.exceptions import KafkaPlumbingError
    from sakk.app import make_codec

    settings = request.app.state.settings
    if settings.uses_embedded_broker:
        raise ConsoleError(
            503, "no_broker",
            "this console has no broker to send to: start it with SAKK_KAFKA_BOOTSTRAP_SERVERS",
        )  # fmt: skip
    engine = request.app.state.engine
    try:
        with Redriver(settings, engine, make_codec(settings, engine), forced=body.force) as r:
            return r.redrive(dead_letter_id, by, body.reason)
    except RedriveError as exc:
        raise ConsoleError(409, "refused", str(exc)) from exc
    except KafkaPlumbingError as exc:
        raise ConsoleError(503, "broker_unavailable", str(exc)) from exc


class DeadLetterBody(Out):
    """The stored copy decoded with the release's and the approved schemas, masked."""

    dead_letter_id: int
    key: str
    stored_bytes: int | None  # None: no stored copy
    cut: bool  # as long as a copy can be: the original was likely longer
    event_type: str | None
    body: dict[str, Any] | None
    decode_error: str | None


@router.get(
    "/dead-letters/{dead_letter_id}/body", response_model=DeadLetterBody,
    summary="Read a dead letter's body, decoded and masked (operators and auditors)",
)  # fmt: skip
def body(
    request: Request,
    dead_letter_id: DeadLetterId,
    who: Annotated[Principal, Depends(require_reader)],
) -> DeadLetterBody:
    from engine.audit.export import jsonable
    from engine.dlq.inspect import inspect_dead_letter
    from engine.ledger.schemas import LedgerApprovedSchemas
    from engine.serialization import AvroCodec, SchemaRegistry

    settings, engine = request.app.state.settings, request.app.state.engine
    codec = AvroCodec(SchemaRegistry.from_dir(settings.schemas_dir), LedgerApprovedSchemas(engine))
    with reading(request) as conn:
        get_dead_letter(conn, who.audience, dead_letter_id)  # 404 when there is none
        view = inspect_dead_letter(conn, codec, dead_letter_id, settings.max_message_bytes)
    return DeadLetterBody(
        dead_letter_id=dead_letter_id, key=view.key, stored_bytes=view.stored_bytes,
        cut=view.cut, event_type=view.event_type,
        body=None if view.body is None else jsonable(view.body), decode_error=view.decode_error,
    )  # fmt: skip
