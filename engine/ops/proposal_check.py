"""What ``sakk audit verify`` checks of four eyes: each proposal against the audit log.

For every row of ``operator_proposals``: its request is the one its ``proposal.propose``
record hashed, made by its proposer; a decided one has its decision's record by its
decider; an APPROVED one names the action's record, that record is of the proposed
action, taken by its approver, and the approver is not the proposer. And every
``proposal.approve`` record of the log has its APPROVED row: a row deleted behind the
triggers is named too. (The log's own chain is ``engine.ops.audit_log``'s to check.)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, select

from engine.ledger.models import OperatorAction, OperatorProposal, table_of

BATCH_ROWS = 2_000
_P = table_of(OperatorProposal)
_A = table_of(OperatorAction)
DECISION_RECORDS = {"APPROVED": "proposal.approve", "REFUSED": "proposal.refuse",
                    "EXPIRED": "proposal.expire", "FAILED": "proposal.fail"}  # fmt: skip


def check_proposals(conn: Connection) -> list[str]:
    """Every way a proposal and the audit log disagree, one line each."""
    problems: list[str] = []
    approved_seqs: set[int] = set()
    for batch in _batches(conn):
        seqs = {s for r in batch for s in (r.proposal_seq, r.decision_seq, r.action_seq) if s}
        records = _records(conn, seqs)
        for row in batch:
            problems += _check_row(row, records)
            if row.state == "APPROVED" and row.decision_seq is not None:
                approved_seqs.add(int(row.decision_seq))
    for seq, target in conn.execute(
        select(_A.c.seq, _A.c.target).where(_A.c.action == "proposal.approve").order_by(_A.c.seq)
    ):
        if seq not in approved_seqs:
            problems.append(f"operator action #{seq} approves {target}, which is not APPROVED")
    return problems


def _check_row(row: Any, records: dict[int, Any]) -> list[str]:
    where = f"proposal {row.id} ({row.action} by {row.proposed_by}, {row.state})"
    problems = []
    if hashlib.sha256(row.request.encode()).hexdigest() != row.request_sha256:
        problems.append(f"{where}: its request no longer matches its SHA-256")
    proposed = records.get(row.proposal_seq)
    if not _is(proposed, "proposal.propose", row.id, row.proposed_by):
        problems.append(f"{where}: no proposal.propose record #{row.proposal_seq} by its proposer")
    elif _new(proposed).get("request_sha256") != row.request_sha256:
        problems.append(f"{where}: its request is not the one record #{row.proposal_seq} hashed")
    if row.state == "PENDING":
        return problems
    decided = records.get(row.decision_seq) if row.decision_seq else None
    if not _is(decided, DECISION_RECORDS[row.state], row.id, row.decided_by):
        problems.append(f"{where}: no {DECISION_RECORDS[row.state]} record by {row.decided_by}")
    if row.state != "APPROVED":
        return problems
    if row.decided_by == row.proposed_by:
        problems.append(f"{where}: approved by its own proposer")
    taken = records.get(row.action_seq) if row.action_seq else None
    if taken is None or taken.action != row.action or taken.actor != row.decided_by:
        problems.append(f"{where}: no {row.action} record #{row.action_seq} by its approver")
    elif decided is not None and _new(decided).get("action_seq") != row.action_seq:
        problems.append(f"{where}: its approval names another action record")
    return problems


def _is(record: Any, action: str, proposal_id: int, actor: str | None) -> bool:
    return (
        record is not None
        and record.action == action
        and record.target == f"proposal {proposal_id}"
        and record.actor == actor
    )


def _new(record: Any) -> dict[str, Any]:
    value = None if record.new_value is None else json.loads(record.new_value)
    return value if isinstance(value, dict) else {}


def _records(conn: Connection, seqs: set[int]) -> dict[int, Any]:
    found: dict[int, Any] = {}
    ordered = sorted(seqs)
    for i in range(0, len(ordered), 500):
        chunk = ordered[i : i + 500]
        found.update({r.seq: r for r in conn.execute(select(_A).where(_A.c.seq.in_(chunk)))})
    return found


def _batches(conn: Connection) -> Iterator[list[Any]]:
    after = 0
    while True:
        rows = conn.execute(
            select(_P).where(_P.c.id > after).order_by(_P.c.id).limit(BATCH_ROWS)
        ).all()
        if rows:
            yield list(rows)
        if len(rows) < BATCH_ROWS:
            return
        after = rows[-1].id
