"""Four eyes: operators propose what moves money or trust, another operator approves it.

The console never acts on a four-eyes action directly: ``POST /proposals`` files it
(``engine.ops.proposals.propose``), ``POST /proposals/{id}/approve`` takes it as another
operator, then carries out what follows it (``sakk.followups``), ``.../refuse`` turns it
down. Operators only; a browser session's change carries its CSRF token.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from engine.audit.window_settlement import parties_of
from engine.config import Settings
from engine.ops.action import Actor
from engine.ops.audit_log import MAX_REASON_CHARS
from engine.ops.proposals import (
    LIST_LIMIT_MAX,
    MAX_TTL_S,
    MIN_TTL_S,
    Proposal,
    ProposalError,
    ProposalState,
    approve,
    get_proposal,
    list_proposals,
    propose,
    refuse,
)
from engine.ops.registry import FOUR_EYES, RegistryError, from_json, needs_four_eyes
from engine.ops.users import PasswordPolicyError, hash_password, new_token
from sakk.console.api.common import engine_of, now
from sakk.console.auth import Principal, require_operator
from sakk.console.errors import ConsoleError
from sakk.followups import follow_up, problem_before_approving

router = APIRouter(tags=["proposals"])

ProposalId = Annotated[int, Path(ge=1, le=2**62, description="the proposal's number")]
STATUS_OF = {"not_found": 404, "own_proposal": 403, "expired": 409, "decided": 409,
             "failed": 409, "noop": 409, "invalid": 400}  # fmt: skip
# What the console fills in itself: who asks is the signed-in operator, never the body.
ACTOR_FIELDS = {
    "window.settle": "by", "window.confirm": "by", "notifications.redeliver": "requested_by",
    "user.create": "created_by", "user.token.issue": "issued_by",
}  # fmt: skip


class ProposalOut(BaseModel):
    id: int
    action: str
    target: str
    state: str
    proposed_by: str
    proposed_at: str
    expires_at: str
    reason: str | None
    old: Any = None
    new: Any = None
    request_sha256: str
    proposal_seq: int
    decided_by: str | None
    decided_at: str | None
    decision_reason: str | None
    decision_seq: int | None
    action_seq: int | None
    request: dict[str, Any] | None = None


class ProposalMade(ProposalOut):
    token: str | None = None  # a token proposed for a user: shown this once, works once approved


class ProposalPage(BaseModel):
    items: list[ProposalOut]
    next_before: int | None  # pass as ``before`` for the next (older) page


class NewProposal(BaseModel):
    action: str = Field(min_length=1, max_length=40, description=f"one of {sorted(FOUR_EYES)}")
    request: dict[str, Any] = Field(description="the action's request (engine/ops/registry.py)")
    reason: str | None = Field(default=None, max_length=MAX_REASON_CHARS)
    ttl_s: int | None = Field(default=None, ge=MIN_TTL_S, le=MAX_TTL_S)


class Decision(BaseModel):
    reason: str | None = Field(default=None, max_length=MAX_REASON_CHARS)


class Refusal(BaseModel):
    reason: str = Field(min_length=1, max_length=MAX_REASON_CHARS)


class Approved(BaseModel):
    proposal: ProposalOut
    followed_by: list[str]
    follow_up_error: str | None = None


def _out(proposal: Proposal, with_request: bool = False) -> ProposalOut:
    return ProposalOut(**proposal.as_dict(with_request))


def _error(exc: ProposalError) -> ConsoleError:
    return ConsoleError(STATUS_OF.get(exc.code, 400), exc.code, str(exc))


def settings_of(request: Request) -> Settings:
    """The switch's settings (broker, data dir) for what follows an approval."""
    settings: Settings = request.app.state.settings
    return settings


def _parties(request: Request) -> dict[str, Any]:
    """Who a settlement names, as the switch's settings and the ledger's banks say."""
    settings = settings_of(request)
    with engine_of(request).connect() as conn:
        parties = parties_of(
            conn, settings.settlement_switch_code, settings.settlement_bank_code,
            settings.settlement_clearing_system,
        )  # fmt: skip
    return {"switch": parties.switch, "settlement_bank": parties.settlement_bank,
            "bics": dict(parties.bics), "clearing_system": parties.clearing_system}  # fmt: skip


@router.get("/proposals", response_model=ProposalPage, summary="Proposals, newest first")
def list_(
    request: Request,
    who: Annotated[Principal, Depends(require_operator)],
    state: Annotated[ProposalState | None, Query()] = None,
    before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=LIST_LIMIT_MAX)] = 50,
) -> ProposalPage:
    found = list_proposals(engine_of(request), now(request), state, limit, before)
    more = found[-1].id if len(found) == limit else None
    return ProposalPage(items=[_out(p) for p in found], next_before=more)


@router.get("/proposals/{proposal_id}", response_model=ProposalOut, summary="One proposal")
def one(
    request: Request,
    proposal_id: ProposalId,
    who: Annotated[Principal, Depends(require_operator)],
    with_request: bool = False,
) -> ProposalOut:
    try:
        return _out(get_proposal(engine_of(request), proposal_id, now(request)), with_request)
    except ProposalError as exc:
        raise _error(exc) from exc


def _filled(
    request: Request, body: NewProposal, who: Principal
) -> tuple[dict[str, Any], str | None]:
    """The request with what the console decides itself: who asks, a movement's id, a
    settlement's parties, a password's hash (never the password), a token's id and hash
    (its text returned once)."""
    fields, token = dict(body.request), None
    if body.action in ACTOR_FIELDS:
        fields[ACTOR_FIELDS[body.action]] = who.name
    if body.action == "liquidity.movement":
        fields.setdefault("movement_id", str(uuid.uuid4()))
    if body.action in ("window.settle", "window.confirm"):
        fields["parties"] = _parties(request)
    if "password" in fields and body.action in ("user.create", "user.password"):
        password = fields.pop("password")
        try:
            fields["password_hash"] = hash_password(password if isinstance(password, str) else "")
        except PasswordPolicyError as exc:
            raise ConsoleError(400, "invalid", str(exc)) from exc
    if body.action == "user.token.issue":
        issued = new_token()
        fields.update(token_id=issued.token_id, secret_hash=issued.secret_hash)
        token = issued.text
    return fields, token


@router.post(
    "/proposals", response_model=ProposalMade, status_code=201,
    summary="Propose a four-eyes action; another operator approves it",
    responses={409: {"description": "Refused by the action's rules, or nothing would change"}},
)  # fmt: skip
def create(
    request: Request, body: NewProposal, who: Annotated[Principal, Depends(require_operator)]
) -> ProposalMade:
    fields, token = _filled(request, body, who)
    try:
        action = from_json({"action": body.action, "request": fields})
    except RegistryError as exc:
        raise ConsoleError(400, "invalid", str(exc)) from exc
    if not needs_four_eyes(action):
        raise ConsoleError(
            400, "not_four_eyes", f"{body.action} with this request needs no second operator"
        )
    ttl = body.ttl_s or request.app.state.config.proposal_ttl_s
    try:
        made = propose(engine_of(request), action, Actor(who.name, body.reason), now(request), ttl)
    except ProposalError as exc:
        raise _error(exc) from exc
    return ProposalMade(**made.as_dict(), token=token)


@router.post(
    "/proposals/{proposal_id}/approve", response_model=Approved,
    summary="Approve another operator's proposal: its action is taken now",
    responses={409: {"description": "Expired, decided already, or refused by now (FAILED)"}},
)  # fmt: skip
def approve_(
    request: Request, proposal_id: ProposalId, body: Decision,
    who: Annotated[Principal, Depends(require_operator)],
) -> Approved:  # fmt: skip
    engine, at = engine_of(request), now(request)
    settings = settings_of(request)
    try:
        problem = problem_before_approving(settings, get_proposal(engine, proposal_id, at).action)
        if problem is not None:
            raise ConsoleError(409, "cannot_follow_up", problem)
        done = approve(engine, proposal_id, Actor(who.name, body.reason), at)
        approved = get_proposal(engine, proposal_id, at)
    except ProposalError as exc:
        raise _error(exc) from exc
    try:
        lines, error = follow_up(settings, approved, done, who.name, at), None
    except Exception as exc:  # noqa: BLE001  the action is taken: say what did not follow
        lines, error = [], f"{type(exc).__name__}: {exc}"[:MAX_REASON_CHARS]
    return Approved(proposal=_out(approved), followed_by=lines, follow_up_error=error)


@router.post(
    "/proposals/{proposal_id}/refuse", response_model=ProposalOut,
    summary="Refuse a proposal, saying why (its proposer may withdraw it so)",
    responses={409: {"description": "Expired or decided already"}},
)  # fmt: skip
def refuse_(
    request: Request, proposal_id: ProposalId, body: Refusal,
    who: Annotated[Principal, Depends(require_operator)],
) -> ProposalOut:  # fmt: skip
    try:
        decided = refuse(engine_of(request), proposal_id, who.name, now(request), body.reason)
    except ProposalError as exc:
        raise _error(exc) from exc
    return _out(decided)
