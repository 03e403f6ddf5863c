"""Redrive a dead letter: who may send which kinds again, and the audit record of each redrive.

The sending is ``engine.dlq.redrive``'s (record REQUESTED, produce, mark PUBLISHED); the
request is recorded with its audit record in one transaction (``claim_redrive``).

Kinds refused unless forced (``sakk dlq redrive --force``): a ``poison`` message killed
or crashed its consumer each time it was handled, and a ``corrupt_batch`` is bytes the
client could not read; sending either again as it is would most likely do the same.
A ``security`` dead letter is never sent again from here (the bank signs it again).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from sqlalchemy import Connection

from engine.ledger.dead_letters import DeadLetterRecord, RedriveRequest, get_dead_letter
from engine.ledger.exceptions import DeadLetterNotFoundError
from engine.ops.action import Plan, Refused
from engine.ops.audit_log import ActionRecord
from engine.pipeline.dead_letters import CORRUPT_BATCH_KIND, POISON_KIND, SECURITY_KIND

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


@dataclass(frozen=True)
class RedriveCorrected:
    """Send dead letter ``dead_letter_id`` again with a corrected ``body`` (and the bank's
    ``signature`` file where banks sign): the decision to send these bytes.

    Taking it writes only its audit record (the bytes' SHA-256 and size); the redrive
    itself follows, sent by ``engine.dlq.redrive`` with exactly this body, and is recorded
    as a ``dlq.redrive`` of its own. With four eyes (``engine.ops.proposals``) it is what a
    second operator approves before a corrected body goes anywhere.
    """

    name: ClassVar[str] = "dlq.redrive.corrected"
    dead_letter_id: int
    body: bytes = field(repr=False)
    signature: bytes | None = field(default=None, repr=False)
    forced: bool = False

    @property
    def target(self) -> str:
        return f"dead letter {self.dead_letter_id}"

    def load(self, conn: Connection) -> DeadLetterRecord | None:
        try:
            return get_dead_letter(conn, self.dead_letter_id)
        except DeadLetterNotFoundError:
            return None

    def decide(self, dead: DeadLetterRecord | None, at: datetime) -> Plan | Refused:
        if dead is None:
            return Refused(f"no dead letter {self.dead_letter_id} in the ledger")
        if dead.kind == SECURITY_KIND:
            return Refused(f"{self.target} was refused for its signature: the bank signs it again")
        if dead.redrive is not None:
            r = dead.redrive
            return Refused(f"{self.target} was already redriven by {r.requested_by} ({r.status})")
        if not self.body:
            return Refused("a corrected body is not empty")
        new = {"body_sha256": hashlib.sha256(self.body).hexdigest(),
               "body_bytes": len(self.body), "signed": self.signature is not None,
               "forced": self.forced, "target_topic": dead.source_topic}  # fmt: skip
        return Plan(self.target, {"kind": dead.kind, "redrive": None}, new)

    def apply(self, conn: Connection, plan: Plan, seq: int) -> None:
        return None  # the redrive follows (engine.dlq.redrive), with its own record
