"""Four eyes: what waits for a second operator, approving or refusing it, and proposing
the changes that move money or trust from the screens that show them.

``engine.ops.proposals`` keeps the rules: nobody approves their own proposal, a proposal
expires, an approved action is decided again on the ledger as it is then, and every
proposal and decision is in the operator audit log. Auditors read proposals; bank users
see none.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse

from engine.config import Settings
from engine.iso.amounts import AmountError, to_minor
from engine.ops.action import Actor
from engine.ops.audit_log import MAX_REASON_CHARS
from engine.ops.limits import SetBankLimit
from engine.ops.proposals import (
    ProposalError,
    ProposalState,
    approve,
    get_proposal,
    list_proposals,
    propose,
    refuse,
)
from sakk.console.api.common import engine_of, now
from sakk.console.auth import Principal
from sakk.console.pages.render import (
    OPERATORS,
    Operator,
    PageError,
    Reader,
    need,
    page,
    settings_of,
    shown_as_page,
)
from sakk.followups import follow_up, problem_before_approving

router = APIRouter(include_in_schema=False)
PAGE_ROWS = 100
ProposalId = Annotated[int, Path(ge=1, le=2**62)]
Reason = Annotated[str, Form(max_length=MAX_REASON_CHARS)]
STATES = tuple(s.value for s in ProposalState)
PROPOSAL_ERROR_STATUS = {"not_found": 404, "own_proposal": 403, "invalid": 400}


def proposal_error(exc: ProposalError, who: Principal) -> PageError:
    return PageError(PROPOSAL_ERROR_STATUS.get(exc.code, 409), str(exc), who)


def listing(
    request: Request, who: Principal, state: str = "", notice: str | None = None
) -> HTMLResponse:
    """The proposals page, newest first (PENDING ones past their expiry shown EXPIRED)."""
    if state and state not in STATES:
        raise PageError(400, f"state {state!r}: expected one of {', '.join(STATES)}", who)
    chosen = ProposalState(state) if state else None
    found = list_proposals(engine_of(request), now(request), chosen, PAGE_ROWS)
    return page(
        request, who, "proposals.html", "Proposals", proposals=[_shown(p) for p in found],
        state=state, states=STATES, notice=notice,
    )  # fmt: skip


def _shown(proposal: Any) -> dict[str, Any]:
    return proposal.as_dict() | {"state": proposal.state.value}


@router.get("/proposals", response_class=HTMLResponse)
def proposals(
    request: Request,
    who: Reader,
    state: Annotated[str, Query(max_length=16)] = "",
) -> HTMLResponse:
    return listing(request, who, state)


def proposed(request: Request, who: Principal, action: Any, reason: str) -> HTMLResponse:
    """Keep ``action`` for a second operator; the proposals page says what happened."""
    need(who, OPERATORS)
    ttl_s = request.app.state.config.proposal_ttl_s
    try:
        with shown_as_page(who):
            made = propose(
                engine_of(request), action, Actor(who.name, reason or None), now(request), ttl_s
            )
    except ProposalError as exc:
        raise proposal_error(exc, who) from exc
    notice = (
        f"proposal {made.id} ({made.action} on {made.target}) waits for another operator "
        f"until {made.expires_at:%Y-%m-%d %H:%M} UTC"
    )
    return listing(request, who, "", notice)


def _switch_settings(request: Request) -> Settings:
    """The settings a follow-up runs with: the console's, on the ledger it reads."""
    return settings_of(request).replace(database_url=request.app.state.config.database_url)


@router.post("/proposals/{proposal_id}/approve", response_class=HTMLResponse)
def approve_proposal(
    request: Request,
    proposal_id: ProposalId,
    who: Operator,
    reason: Reason = "",
) -> HTMLResponse:
    """Take the proposal's action now, then what follows it outside the ledger (a corrected
    dead letter sent, a window's move published), as ``sakk proposals approve`` does."""
    settings, engine, at = _switch_settings(request), engine_of(request), now(request)
    try:
        problem = problem_before_approving(settings, get_proposal(engine, proposal_id, at).action)
        if problem is not None:
            raise PageError(409, problem, who)
        with shown_as_page(who):
            done = approve(engine, proposal_id, Actor(who.name, reason or None), at)
        taken = get_proposal(engine, proposal_id, at)
    except ProposalError as exc:
        raise proposal_error(exc, who) from exc
    lines = follow_up(settings, taken, done, who.name, at)
    notice = "; ".join(
        [f"proposal {proposal_id} approved: taken as operator action #{done.seq}", *lines]
    )
    return listing(request, who, "", notice)


@router.post("/proposals/{proposal_id}/refuse", response_class=HTMLResponse)
def refuse_proposal(
    request: Request,
    proposal_id: ProposalId,
    who: Operator,
    reason: Annotated[str, Form(min_length=1, max_length=MAX_REASON_CHARS)],
) -> HTMLResponse:
    try:
        refuse(engine_of(request), proposal_id, who.name, now(request), reason)
    except ProposalError as exc:
        raise proposal_error(exc, who) from exc
    return listing(request, who, "", f"proposal {proposal_id} refused")


@router.post("/proposals/cap", response_class=HTMLResponse)
def propose_cap(
    request: Request,
    who: Operator,
    bank: Annotated[str, Form(min_length=1, max_length=8, pattern=r"^[0-9A-Za-z]+$")],
    cap: Annotated[str, Form(min_length=1, max_length=32)],
    alert_percent: Annotated[int, Form(ge=1, le=100)],
    currency: Annotated[str, Form(min_length=3, max_length=3)] = "MAD",
    reason: Reason = "",
) -> HTMLResponse:
    """Propose a bank's net debit cap (a decimal amount) and alert percentage."""
    try:
        cap_minor = to_minor(cap.replace(",", "").strip(), currency)
    except AmountError as exc:
        raise PageError(400, f"cap: {exc}", who) from exc
    action = SetBankLimit(bank, currency, cap_minor, alert_percent)
    return proposed(request, who, action, reason.strip())
