"""The settlement screen's money moves: settling a CLOSED window, confirming a SETTLING one
with the settlement bank's pacs.002, funds in or out for a bank (each a four-eyes
proposal), and aborting a settlement attempt (one operator's action, as the API's).

Operators only: the role is checked before a form or a file is read. A proposal is
decided now as it would be taken (``engine.ops.proposals.propose``) and approved from
``/proposals``, where what follows it is carried out as ``sakk proposals approve`` does
(``sakk.followups``: the pacs.009 written, the window's move or the movement published).
A confirmation is checked against the window when it is proposed, as
``sakk settlement confirm FILE`` checks it: one that differs is refused at once with
every difference listed, and nothing is kept.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse

from engine.audit.window_settlement import answer_differences, parties_of, read_answers
from engine.iso.amounts import AmountError, to_minor
from engine.ops.action import ActionRefusedError, Actor
from engine.ops.audit_log import MAX_REASON_CHARS
from engine.ops.limits import MOVEMENT_KINDS, IssueMovement
from engine.ops.proposals import ProposalError, propose
from engine.ops.windows import ConfirmWindow, SettleWindow
from engine.read.exceptions import WindowError
from engine.risk.instruction import Parties
from sakk.console.api.common import engine_of, now
from sakk.console.api.settlement import AbortIn, abort
from sakk.console.auth import Principal
from sakk.console.pages.render import Operator, settings_of, shown_as_page
from sakk.console.pages.settlement import settlement_page

router = APIRouter(include_in_schema=False)
Label = Annotated[str, Form(min_length=1, max_length=40)]  # a window's label, as listed
Reason = Annotated[str, Form(max_length=MAX_REASON_CHARS)]
BANK_CODE = r"^[0-9A-Za-z]{1,8}$"
MOVEMENT = f"^({'|'.join(MOVEMENT_KINDS)})$"


def _parties(request: Request) -> Parties:
    """Who a settlement names, as the switch's settings and the ledger's banks say."""
    settings = settings_of(request)
    with engine_of(request).connect() as conn:
        return parties_of(
            conn, settings.settlement_switch_code, settings.settlement_bank_code,
            settings.settlement_clearing_system,
        )  # fmt: skip


def _refused(
    request: Request, who: Principal, label: str, problems: list[str], status: int = 409
) -> HTMLResponse:
    return settlement_page(request, who, label, problems=problems, status_code=status)


def _propose(
    request: Request, who: Principal, label: str, action: Any, reason: str
) -> HTMLResponse:
    """File ``action`` for a second operator; the screen says which proposal, or why not."""
    ttl_s = request.app.state.config.proposal_ttl_s
    try:
        made = propose(engine_of(request), action, Actor(who.name, reason.strip() or None),
                       now(request), ttl_s)  # fmt: skip
    except ActionRefusedError as exc:
        return _refused(request, who, label, [f"refused: {exc.reason}"])
    except ProposalError as exc:  # nothing would change, or it cannot be kept
        return _refused(request, who, label, [str(exc)], 400 if exc.code == "invalid" else 409)
    except WindowError as exc:
        return _refused(request, who, label, [str(exc)])
    notice = (
        f"proposal {made.id} ({made.action} on {made.target}) waits for another operator "
        f"until {made.expires_at:%Y-%m-%d %H:%M} UTC"
    )
    return settlement_page(request, who, label, notice, made=made)


@router.post("/settlement/settle", response_class=HTMLResponse)
def propose_settle(
    request: Request, who: Operator, window: Label, reason: Reason = ""
) -> HTMLResponse:
    """Propose instructing the settlement bank for CLOSED (or ABORTED) ``window``: once
    approved it is SETTLING and its pacs.009 is written, one per currency."""
    action = SettleWindow(window, _parties(request), who.name, _nowhere)
    return _propose(request, who, window, action, reason)


def _nowhere(_instructions: Any) -> None:
    """A proposed settlement writes nothing: its approval writes the pacs.009."""


def _upload(request: Request, file: UploadFile) -> bytes | tuple[int, str]:
    """The file's bytes, at most the console's body limit (a body sent without its
    length is read no further); else the status and why not."""
    limit = request.app.state.config.max_body_bytes
    data = file.file.read(limit + 1)
    if len(data) > limit:
        return 413, f"{file.filename or 'the file'}: over {limit} bytes"
    if not data:
        return 400, "the confirmation file is empty"
    return data


@router.post("/settlement/confirm", response_class=HTMLResponse)
def propose_confirm(
    request: Request,
    who: Operator,
    window: Label,
    confirmation: Annotated[UploadFile, File(description="the settlement bank's pacs.002")],
    reason: Reason = "",
) -> HTMLResponse:
    """Propose confirming SETTLING ``window`` with the settlement bank's pacs.002, checked
    now: a file that differs from the window is refused with every difference."""
    data = _upload(request, confirmation)
    if isinstance(data, tuple):
        return _refused(request, who, window, [data[1]], data[0])
    name = (confirmation.filename or "pacs.002")[:200]
    parties = _parties(request)
    try:
        answers = read_answers([(name, data)], parties)
        with engine_of(request).connect() as conn:
            differences = answer_differences(conn, window, answers)
    except WindowError as exc:  # not SETTLING (nothing to confirm), or no such window
        return _refused(request, who, window, [f"refused: {exc}"])
    if differences:
        return _refused(request, who, window, differences)
    action = ConfirmWindow(window, answers, who.name, parties)
    return _propose(request, who, window, action, reason)


@router.post("/settlement/funds", response_class=HTMLResponse)
def propose_funds(
    request: Request,
    who: Operator,
    bank: Annotated[str, Form(pattern=BANK_CODE)],
    movement: Annotated[str, Form(pattern=MOVEMENT)],
    amount: Annotated[str, Form(min_length=1, max_length=32)],
    currency: Annotated[str, Form(min_length=3, max_length=3)] = "MAD",
    reason: Reason = "",
) -> HTMLResponse:
    """Propose funds in or out for ``bank``: ``amount`` a decimal in ``currency``, as
    ``sakk liquidity fund|withdraw --amount`` takes it (never a float)."""
    try:
        minor = to_minor(amount.replace(",", "").strip(), currency)
    except AmountError as exc:
        return _refused(request, who, "", [f"amount: {exc}"], 400)
    if minor <= 0:
        return _refused(request, who, "", ["amount: must be above zero"], 400)
    action = IssueMovement(movement, bank, currency, minor, str(uuid.uuid4()))
    return _propose(request, who, "", action, reason)


@router.post("/settlement/abort", response_class=HTMLResponse)
def abort_attempt(
    request: Request,
    who: Operator,
    window: Label,
    reason: Annotated[str, Form(min_length=1, max_length=MAX_REASON_CHARS)],
) -> HTMLResponse:
    """SETTLING to ABORTED (the settlement bank refused or never answered), as
    ``POST /api/v1/settlement/windows/abort``: one operator's action; settling again is a
    new attempt, itself proposed."""
    with shown_as_page(who):
        done = abort(request, AbortIn(label=window, reason=reason), who)
    notice = f"window {window}: settlement attempt aborted (operator action #{done.seq})"
    return settlement_page(request, who, window, notice)
