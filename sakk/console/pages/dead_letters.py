"""Dead letters: listed, read one (its body decoded, masked), and sent again (redriven).

Dead letters are the switch's (a bank user reads none, as the read side says). A redrive
of the stored message is one operator's action, recorded in the audit log by
``engine.dlq.redrive``; it needs the broker the consumers read, so the console sends it
only when started with ``SAKK_KAFKA_BOOTSTRAP_SERVERS``. A redrive with a corrected body
moves money on a body no bank signed: that one goes through four eyes (``sakk dlq``,
proposals).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from engine.config import Settings
from engine.dlq.body import corrected_body
from engine.dlq.exceptions import RedriveError
from engine.dlq.inspect import inspect_dead_letter
from engine.dlq.redrive import RedriveOutcome, Redriver
from engine.dlq.signatures import MAX_SIGNATURE_FILE_BYTES
from engine.kafka.exceptions import KafkaPlumbingError
from engine.ledger.dead_letters import MAX_REASON_CHARS, get_dead_letter
from engine.ledger.exceptions import DeadLetterNotFoundError
from engine.ledger.schemas import LedgerApprovedSchemas
from engine.ops.redrive import RedriveCorrected
from engine.read.dead_letters import DeadLetterFilter, count_dead_letters, list_dead_letters
from engine.serialization import AvroCodec, SchemaRegistry, SerializationError
from sakk.app import make_codec
from sakk.console.api.common import engine_of, reading
from sakk.console.auth import Principal
from sakk.console.pages.proposals import proposed
from sakk.console.pages.render import (
    Operator,
    PageError,
    Reader,
    page,
    settings_of,
    shown_as_page,
)

router = APIRouter(include_in_schema=False)
MAX_BODY_CHARS = 1_048_576  # a corrected event's JSON (the broker's message limit is lower)
PAGE_ROWS = 100
DeadLetterId = Annotated[int, Path(ge=1, le=2**62)]


def broker_settings(request: Request, who: Principal) -> Settings:
    """The console's settings when it knows the consumers' broker; else why it cannot send."""
    settings = settings_of(request)
    if settings.uses_embedded_broker:
        raise PageError(
            409, "this console was started without SAKK_KAFKA_BOOTSTRAP_SERVERS: a redrive "
            "goes to the broker the consumers read (or use sakk dlq redrive there)", who,
        )  # fmt: skip
    return settings


@router.get("/dead-letters", response_class=HTMLResponse)
def dead_letters(
    request: Request,
    who: Reader,
    kind: Annotated[str, Query(max_length=32)] = "",
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> HTMLResponse:
    which = DeadLetterFilter(kind=kind or None)
    with shown_as_page(who), reading(request) as conn:
        found = list_dead_letters(conn, who.audience, which, cursor, PAGE_ROWS)
        total = count_dead_letters(conn, who.audience, which)
    return page(
        request, who, "dead_letters.html", "Dead letters", rows=list(found.items),
        next_cursor=found.next_cursor, total=total, kind=kind,
        query=f"kind={kind}" if kind else "",
    )  # fmt: skip


def _reading_codec(request: Request) -> AvroCodec:
    """A codec that writes nothing: the release's schemas and those approved in the ledger."""
    registry = SchemaRegistry.from_dir(settings_of(request).schemas_dir)
    return AvroCodec(registry, LedgerApprovedSchemas(engine_of(request)))


@router.get("/dead-letters/{dead_letter_id}", response_class=HTMLResponse)
def dead_letter(request: Request, dead_letter_id: DeadLetterId, who: Reader) -> HTMLResponse:
    max_bytes = settings_of(request).max_message_bytes
    try:
        with shown_as_page(who), reading(request) as conn:
            view = inspect_dead_letter(conn, _reading_codec(request), dead_letter_id, max_bytes)
    except DeadLetterNotFoundError as exc:
        raise PageError(404, str(exc), who) from exc
    except SerializationError as exc:
        raise PageError(500, f"cannot decode dead letter {dead_letter_id}: {exc}", who) from exc
    title = f"Dead letter {dead_letter_id}"
    return page(request, who, "dead_letter.html", title, view=view, d=view.record)


def _redrive(
    settings: Settings, request: Request, dead_letter_id: int, who: str, reason: str
) -> RedriveOutcome:
    engine = engine_of(request)
    with Redriver(settings, engine, make_codec(settings, engine)) as redriver:
        return redriver.redrive(dead_letter_id, who, reason or None)


@router.post("/dead-letters/{dead_letter_id}/redrive", response_class=HTMLResponse)
async def redrive(
    request: Request,
    dead_letter_id: DeadLetterId,
    who: Operator,
    reason: Annotated[str, Form(max_length=MAX_REASON_CHARS)] = "",
) -> HTMLResponse:
    settings = broker_settings(request, who)
    try:
        outcome = await run_in_threadpool(
            _redrive, settings, request, dead_letter_id, who.name, reason.strip()
        )
    except DeadLetterNotFoundError as exc:
        raise PageError(404, str(exc), who) from exc
    except (RedriveError, SerializationError, KafkaPlumbingError) as exc:
        raise PageError(409, str(exc), who) from exc
    max_bytes = settings.max_message_bytes
    with reading(request) as conn:
        view = inspect_dead_letter(conn, _reading_codec(request), dead_letter_id, max_bytes)
    title = f"Dead letter {dead_letter_id}"
    return page(
        request, who, "dead_letter.html", title, view=view, d=view.record, notice=outcome.summary
    )


@router.post("/dead-letters/{dead_letter_id}/propose", response_class=HTMLResponse)
def propose_corrected(
    request: Request,
    dead_letter_id: DeadLetterId,
    who: Operator,
    body: Annotated[str, Form(min_length=1, max_length=MAX_BODY_CHARS)],
    signature: Annotated[str, Form(max_length=MAX_SIGNATURE_FILE_BYTES)] = "",
    reason: Annotated[str, Form(max_length=MAX_REASON_CHARS)] = "",
) -> HTMLResponse:
    """Propose sending the dead letter again with the bank's corrected body (JSON fields of
    the event) and its signature: a second operator approves it before it goes anywhere."""
    corrected, signed = body.strip().encode(), signature.strip().encode() or None
    try:
        with shown_as_page(who), reading(request) as conn:
            topic = get_dead_letter(conn, dead_letter_id).source_topic
        corrected_body(_reading_codec(request), topic, corrected)  # refused now if it won't decode
    except DeadLetterNotFoundError as exc:
        raise PageError(404, str(exc), who) from exc
    except RedriveError as exc:
        raise PageError(400, str(exc), who) from exc
    action = RedriveCorrected(dead_letter_id, corrected, signed)
    return proposed(request, who, action, reason.strip())
