"""Four eyes: one operator proposes an action, a different operator approves it.

- :func:`propose` decides the action against the ledger as it is (an action its rules
  refuse now is refused at once, with its own reason), and keeps its request as JSON
  (``engine.ops.registry``), what it would change, who proposed it and until when.
- :func:`approve` runs it (``engine.ops.action.act``) in the approval's transaction,
  decided again on the ledger as it is then: a proposal whose action is now refused is
  FAILED with the reason. Nobody approves their own proposal; an expired or decided one
  is not approved.
- :func:`refuse` turns it down (its proposer may withdraw it this way).
- A PENDING proposal past its expiry is EXPIRED when next read or decided, or by
  :func:`expire_due` (a sweeper).

Every proposal, decision and approved action is a record of the one operator audit log
(``engine.ops.audit_log``): ``proposal.propose``, ``proposal.approve`` (naming the action's
record), ``proposal.refuse``, ``proposal.expire``, ``proposal.fail``, so auditors verify
one chain (``engine.ops.proposal_check``). A row moves once from PENDING; triggers refuse
any other change, and every deletion.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from engine.ledger.models import OperatorProposal, table_of
from engine.ledger.recorder import GuardFailed
from engine.ops.action import Action, ActionRefusedError, Actor, Done, Refused, act
from engine.ops.audit_log import (
    MAX_REASON_CHARS,
    ActionRecord,
    append_action,
    canonical_json,
    lock_action_log,
    next_action_seq,
)
from engine.ops.registry import RegistryError, from_json, to_json
from engine.times import as_utc

DEFAULT_TTL_S = 86_400  # a day to find a second operator
MIN_TTL_S = 60
MAX_TTL_S = 7 * 86_400
MAX_REQUEST_CHARS = 16 * 1024 * 1024  # a request's JSON (a corrected body, pacs.002 files)
LIST_LIMIT_MAX = 1_000
APPROVE_TRIES_MAX = 3  # an approval read again when a writer changed its action's rows meanwhile
HIDDEN = "(hidden)"  # a hash of a password or a token secret, as a proposal is shown
EXPIRY_ACTOR = "sakk-expiry"  # who the log names for a proposal that expired
PROPOSE, APPROVE, REFUSE, EXPIRE, FAIL = (
    "proposal.propose", "proposal.approve", "proposal.refuse", "proposal.expire", "proposal.fail",
)  # fmt: skip

_T = table_of(OperatorProposal)


class ProposalState(enum.StrEnum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REFUSED = "REFUSED"
    EXPIRED = "EXPIRED"
    FAILED = "FAILED"


DECISIONS = {ProposalState.APPROVED: APPROVE, ProposalState.REFUSED: REFUSE,
             ProposalState.EXPIRED: EXPIRE, ProposalState.FAILED: FAIL}  # fmt: skip


class ProposalError(ValueError):
    """Why a proposal is not made or not decided. ``code``: not_found, own_proposal,
    expired, decided, failed, noop, invalid."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Proposal:
    id: int
    action: str
    target: str
    request: dict[str, Any]  # {"action": NAME, "request": {...}}, engine.ops.registry
    request_sha256: str
    preview_old: Any
    preview_new: Any
    state: ProposalState
    proposed_by: str
    proposed_at: datetime
    expires_at: datetime
    reason: str | None
    proposal_seq: int
    decided_by: str | None = None
    decided_at: datetime | None = None
    decision_reason: str | None = None
    decision_seq: int | None = None
    action_seq: int | None = None

    def decoded(self) -> Any:
        """The action as proposed (``engine.ops.registry.from_json``)."""
        return from_json(self.request)

    def as_dict(self, with_request: bool = False) -> dict[str, Any]:
        """JSON-safe; the request (which may hold a corrected body) only when asked for."""
        shown: dict[str, Any] = {
            "id": self.id, "action": self.action, "target": self.target,
            "state": self.state.value, "proposed_by": self.proposed_by,
            "proposed_at": self.proposed_at.isoformat(), "expires_at": self.expires_at.isoformat(),
            "reason": self.reason, "old": self.preview_old, "new": self.preview_new,
            "request_sha256": self.request_sha256, "proposal_seq": self.proposal_seq,
            "decided_by": self.decided_by, "decision_reason": self.decision_reason,
            "decided_at": None if self.decided_at is None else self.decided_at.isoformat(),
            "decision_seq": self.decision_seq, "action_seq": self.action_seq,
        }  # fmt: skip
        if with_request:
            shown["request"] = _hide_hashes(self.request)
        return shown


def _hide_hashes(value: Any) -> Any:
    """The request as shown: a password's or a token's hash is never shown, even so."""
    if isinstance(value, dict):
        return {k: HIDDEN if k.endswith("_hash") else _hide_hashes(v) for k, v in value.items()}
    return value


def request_text(action: Any) -> tuple[str, str]:
    """The request's JSON as stored, and its SHA-256 (the proposal's audit record keeps it)."""
    text = json.dumps(to_json(action), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if len(text) > MAX_REQUEST_CHARS:
        raise ProposalError("invalid", f"a proposal's request is at most {MAX_REQUEST_CHARS} chars")
    return text, hashlib.sha256(text.encode()).hexdigest()


def propose(
    engine: Engine, action: Action[Any], actor: Actor | str, at: datetime,
    ttl_s: int = DEFAULT_TTL_S,
) -> Proposal:  # fmt: skip
    """Keep ``action`` for a second operator's approval, with what it would change now.

    Raises :class:`ActionRefusedError` when its rules refuse it now (nothing is kept),
    :class:`ProposalError` when it would change nothing or cannot be kept.
    """
    who = _actor(actor)
    if not MIN_TTL_S <= ttl_s <= MAX_TTL_S:
        raise ProposalError("invalid", f"expiry {ttl_s} s: expected {MIN_TTL_S}..{MAX_TTL_S}")
    try:
        text, sha = request_text(action)
    except RegistryError as exc:
        raise ProposalError("invalid", str(exc)) from exc
    at = as_utc(at)
    expires = at + timedelta(seconds=ttl_s)
    with engine.begin() as conn:
        lock_action_log(conn)
        plan = action.decide(action.load(conn), at)
        if isinstance(plan, Refused):
            raise ActionRefusedError(action.name, plan.reason)
        if plan.noop:
            raise ProposalError("noop", f"{action.name} on {plan.target}: nothing would change")
        seq = next_action_seq(conn)
        inserted = conn.execute(
            insert(_T).values(
                action=action.name,
                target=plan.target,
                request=text,
                request_sha256=sha,
                preview_old=canonical_json(plan.old),
                preview_new=canonical_json(plan.new),
                state=ProposalState.PENDING.value,
                proposed_by=who.name,
                proposed_at=at,
                expires_at=expires,
                reason=who.reason,
                proposal_seq=seq,
            )  # fmt: skip
        ).inserted_primary_key
        proposal_id = int(inserted[0]) if inserted is not None else 0
        new = {"action": action.name, "target": plan.target, "new": plan.new,
               "request_sha256": sha, "expires_at": expires.isoformat()}  # fmt: skip
        record = ActionRecord(who.name, at, PROPOSE, f"proposal {proposal_id}", plan.old, new,
                              who.reason)  # fmt: skip
        if append_action(conn, record) != seq:
            raise RuntimeError(f"operator action #{seq} was taken by another action meanwhile")
        return _read(conn, int(proposal_id))


def approve(engine: Engine, proposal_id: int, approver: Actor | str, at: datetime) -> Done[Any]:
    """Take proposal ``proposal_id``'s action, decided again now; ``approver`` is not its
    proposer. Raises :class:`ProposalError` (its ``code`` says why) when it is not taken:
    an expired proposal is EXPIRED, one whose action is refused now is FAILED (both kept).
    """
    who, at = _actor(approver), as_utc(at)
    for attempt in range(1, APPROVE_TRIES_MAX + 1):
        try:
            outcome = _approve_once(engine, proposal_id, who, at)
            break
        except GuardFailed:  # another writer moved one of the action's rows: read again
            if attempt == APPROVE_TRIES_MAX:
                raise
    if isinstance(outcome, ProposalError):
        raise outcome
    return outcome


def _approve_once(
    engine: Engine, proposal_id: int, who: Actor, at: datetime
) -> Done[Any] | ProposalError:
    with engine.begin() as conn:
        lock_action_log(conn)  # one decision at a time: two approvers, one action
        proposal = _pending(conn, proposal_id, at)
        if isinstance(proposal, ProposalError):
            return proposal
        if proposal.proposed_by == who.name:
            return ProposalError(
                "own_proposal", f"proposal {proposal_id} is {who.name}'s own: another operator "
                "approves it",
            )  # fmt: skip
        return _take(conn, proposal, who, at)


def refuse(
    engine: Engine, proposal_id: int, decider: Actor | str, at: datetime, reason: str
) -> Proposal:
    """Turn proposal ``proposal_id`` down, for ``reason`` (its proposer may withdraw it)."""
    who, at = _actor(decider), as_utc(at)
    if not reason.strip() or len(reason) > MAX_REASON_CHARS:
        raise ProposalError("invalid", f"a refusal says why, 1 to {MAX_REASON_CHARS} characters")
    with engine.begin() as conn:
        lock_action_log(conn)
        proposal = _pending(conn, proposal_id, at)
        if not isinstance(proposal, ProposalError):
            _decide(conn, proposal, ProposalState.REFUSED, who.name, at, reason)
            return _read(conn, proposal_id)
    raise proposal


def get_proposal(engine: Engine, proposal_id: int, at: datetime) -> Proposal:
    """The proposal, EXPIRED first if it is PENDING past its expiry."""
    with engine.connect() as conn:
        proposal = _read(conn, proposal_id)
    if proposal.state is ProposalState.PENDING and proposal.expires_at <= as_utc(at):
        with engine.begin() as conn:
            lock_action_log(conn)
            _pending(conn, proposal_id, as_utc(at))
            return _read(conn, proposal_id)
    return proposal


def list_proposals(
    engine: Engine, at: datetime, state: ProposalState | None = None, limit: int = 100,
    before_id: int | None = None,
) -> list[Proposal]:  # fmt: skip
    """Proposals newest first (page on with ``before_id``: the last id of the page), those
    past their expiry EXPIRED first."""
    if not 1 <= limit <= LIST_LIMIT_MAX:
        raise ValueError(f"limit={limit}: expected 1..{LIST_LIMIT_MAX}")
    expire_due(engine, at)
    query = select(_T).order_by(_T.c.id.desc()).limit(limit)
    if state is not None:
        query = query.where(_T.c.state == state.value)
    if before_id is not None:
        query = query.where(_T.c.id < before_id)
    with engine.connect() as conn:
        return [_proposal(r) for r in conn.execute(query)]


def pending(engine: Engine, at: datetime, limit: int = 100) -> list[Proposal]:
    """Proposals waiting for a second operator, newest first."""
    return list_proposals(engine, at, ProposalState.PENDING, limit)


def expire_due(engine: Engine, at: datetime, limit: int = LIST_LIMIT_MAX) -> int:
    """EXPIRE up to ``limit`` PENDING proposals past their expiry; how many."""
    at = as_utc(at)
    due = select(_T.c.id).where(_T.c.state == ProposalState.PENDING.value, _T.c.expires_at <= at)
    with engine.connect() as conn:
        ids = [int(i) for i in conn.execute(due.order_by(_T.c.id).limit(limit)).scalars()]
    if not ids:
        return 0
    expired = 0
    with engine.begin() as conn:
        lock_action_log(conn)
        for proposal_id in ids:
            found = _pending(conn, proposal_id, at)
            expired += isinstance(found, ProposalError) and found.code == "expired"
    return expired


def _take(
    conn: Connection, proposal: Proposal, who: Actor, at: datetime
) -> Done[Any] | ProposalError:
    """Run the action in a savepoint: refused or failing, it writes nothing and the
    proposal is FAILED with the reason."""
    reason = f"four eyes: proposal {proposal.id} by {proposal.proposed_by}"
    reason += "" if proposal.reason is None else f": {proposal.reason}"
    reason += "" if who.reason is None else f"; approved: {who.reason}"
    try:
        action = proposal.decoded()
        with conn.begin_nested():
            done = act(conn, action, Actor(who.name, reason[:MAX_REASON_CHARS]), at)
            if done.seq is None:
                raise ActionRefusedError(proposal.action, "it would change nothing any more")
    except (ActionRefusedError, ValueError) as exc:  # RegistryError, WindowError, ... too
        why = exc.reason if isinstance(exc, ActionRefusedError) else str(exc)
        _decide(conn, proposal, ProposalState.FAILED, who.name, at, why[:MAX_REASON_CHARS])
        return ProposalError("failed", f"proposal {proposal.id} failed: {why}")
    _decide(conn, proposal, ProposalState.APPROVED, who.name, at, who.reason, done.seq)
    return done


def _pending(conn: Connection, proposal_id: int, at: datetime) -> Proposal | ProposalError:
    """The proposal if PENDING and in time; else why not (one past its expiry is EXPIRED)."""
    try:
        proposal = _read(conn, proposal_id, for_update=True)
    except ProposalError as exc:
        return exc
    if proposal.state is not ProposalState.PENDING:
        by = "" if proposal.decided_by is None else f" by {proposal.decided_by}"
        when = "" if proposal.decided_at is None else f" at {proposal.decided_at.isoformat()}"
        return ProposalError("decided", f"proposal {proposal_id} is {proposal.state}{by}{when}")
    if proposal.expires_at <= at:
        _decide(conn, proposal, ProposalState.EXPIRED, EXPIRY_ACTOR, at, None)
        return ProposalError(
            "expired", f"proposal {proposal_id} expired at {proposal.expires_at.isoformat()}"
        )
    return proposal


def _decide(
    conn: Connection, proposal: Proposal, state: ProposalState, by: str, at: datetime,
    reason: str | None, action_seq: int | None = None,
) -> None:  # fmt: skip
    """Record the decision in the log, then move the row once from PENDING."""
    new = {"state": state.value, "action": proposal.action, "target": proposal.target,
           "proposed_by": proposal.proposed_by, "action_seq": action_seq}  # fmt: skip
    record = ActionRecord(by, at, DECISIONS[state], f"proposal {proposal.id}",
                          {"state": ProposalState.PENDING.value}, new, reason)  # fmt: skip
    seq = append_action(conn, record)
    moved = conn.execute(
        update(_T)
        .where(_T.c.id == proposal.id, _T.c.state == ProposalState.PENDING.value)
        .values(
            state=state.value,
            decided_by=by,
            decided_at=at,
            decision_reason=reason,
            decision_seq=seq,
            action_seq=action_seq,
        )  # fmt: skip
    ).rowcount
    if moved != 1:
        raise RuntimeError(f"proposal {proposal.id} was decided by another meanwhile")


def _read(conn: Connection, proposal_id: int, for_update: bool = False) -> Proposal:
    query = select(_T).where(_T.c.id == proposal_id)
    row = conn.execute(query.with_for_update() if for_update else query).first()
    if row is None:
        raise ProposalError("not_found", f"no proposal {proposal_id}")
    return _proposal(row)


def _proposal(r: Any) -> Proposal:
    return Proposal(
        int(r.id), r.action, r.target, json.loads(r.request), r.request_sha256,
        _loads(r.preview_old), _loads(r.preview_new), ProposalState(r.state), r.proposed_by,
        as_utc(r.proposed_at), as_utc(r.expires_at), r.reason, int(r.proposal_seq),
        r.decided_by, None if r.decided_at is None else as_utc(r.decided_at),
        r.decision_reason, r.decision_seq, r.action_seq,
    )  # fmt: skip


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _actor(actor: Actor | str) -> Actor:
    return actor if isinstance(actor, Actor) else Actor(actor)
