"""Redrive a dead letter: who may send which kinds again, and the audit record of each redrive.

The sending is ``engine.dlq.redrive``'s (record REQUESTED, produce, mark PUBLISHED); the
request is recorded with its audit record in one transaction (``claim_redrive``).

Kinds refused unless forced (``sakk dlq redrive --force``): a ``poison`` message killed
or crashed its consumer each time it was handled, and a ``corrupt_batch`` is bytes the
client could not read; sending either again as it is would most likely do the same.
A ``security`` dead letter is never sent again from here (the bank signs it again).
"""

from __future__ import annotations

from datetime import datetime

from engine.ledger.dead_letters import RedriveRequest
from engine.ops.action import Refused
from engine.ops.audit_log import ActionRecord
from engine.pipeline.dead_letters import CORRUPT_BATCH_KIND, POISON_KIND

ACTION = "dlq.redrive"
FORCE_FLAG = "--force"
REFUSED_UNLESS_FORCED = (POISON_KIND, CORRUPT_BATCH_KIND)


def check_redrivable(dead_letter: str, kind: str, forced: bool) -> Refused | None:
    """Pure: None when a dead letter of ``kind`` may be sent again, else why not."""
    if kind in REFUSED_UNLESS_FORCED and not forced:
        return Refused(
            f"{dead_letter} is a {kind} dead letter: sent again as it is, it would most likely "
            f"fail the same way; fix it with --body, or send it anyway with {FORCE_FLAG}"
        )
    return None


def redrive_record(request: RedriveRequest, kind: str, forced: bool, at: datetime) -> ActionRecord:
    """The audit record of a redrive request: what goes where, from which dead letter."""
    new = {
        "status": "REQUESTED", "body_source": str(request.body_source),
        "target_topic": request.target_topic, "event_id": request.event_id,
        "payment_id": request.payment_id, "value_bytes": len(request.value), "forced": forced,
    }  # fmt: skip
    return ActionRecord(
        request.requested_by, at, ACTION, f"dead letter {request.dead_letter_id}",
        {"kind": kind, "redrive": None}, new, request.reason,
    )  # fmt: skip
