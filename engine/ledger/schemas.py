"""The approved writer schemas in the ledger: read them, approve one (first writer wins).

The only writers are this module's two functions: :func:`approve` (an operator, through
``sakk schemas approve``) and :func:`approve_release_schemas` (the release approving its
own schemas at start-up). Neither updates nor deletes a row; the unique fingerprint and
identity make a second writer of either lose, and the loser is told what holds it.
The policy itself is ``engine.schema_policy``; this module only stores its verdicts.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, func, insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from engine.ledger.database import read_only
from engine.ledger.exceptions import ReleaseSchemaConflictError
from engine.ledger.models import ApprovedSchema as ApprovedSchemaRow
from engine.ledger.models import table_of
from engine.schema_policy import Candidate, assess
from engine.serialization import (
    ApprovedSchema,
    SchemaStoreError,
    schema_fingerprint,
    schema_identity,
    schema_text,
)

MAX_APPROVED_SCHEMAS_PER_LOAD = 10_000
RELEASE = "release"
OPERATOR = "operator"
RELEASE_APPROVER = "release"
MAX_APPROVER_CHARS = 64

TABLE = table_of(ApprovedSchemaRow)


class ApprovalStatus(enum.StrEnum):
    APPROVED = "approved"
    ALREADY_APPROVED = "already approved"
    REFUSED = "refused"


class Approval(NamedTuple):
    """What became of a schema offered for approval; ``reason`` says why when refused."""

    status: ApprovalStatus
    reason: str
    candidate: Candidate | None


class ApprovedRecord(NamedTuple):
    """One approved schema as ``sakk schemas list`` shows it."""

    id: int
    fingerprint: bytes
    identity: str
    event_type: str
    origin: str
    approved_by: str
    approved_at: datetime


class LedgerApprovedSchemas:
    """The approved set as the codec reads it (``engine.serialization.ApprovedSchemaSource``)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = read_only(engine)

    def newest_id(self) -> int:
        """The id of the newest approval (0 when none): one cheap indexed query."""
        try:
            with self._engine.connect() as conn:
                return int(conn.execute(select(func.max(TABLE.c.id))).scalar_one() or 0)
        except SQLAlchemyError as exc:
            raise SchemaStoreError(f"cannot read the approved schemas: {exc}") from exc

    def since(self, after_id: int) -> list[ApprovedSchema]:
        """Approvals after ``after_id``, oldest first (at most MAX_APPROVED_SCHEMAS_PER_LOAD)."""
        query = (
            select(TABLE.c.id, TABLE.c.fingerprint, TABLE.c.identity, TABLE.c.event_type,
                   TABLE.c.schema_text)
            .where(TABLE.c.id > after_id)
            .order_by(TABLE.c.id)
            .limit(MAX_APPROVED_SCHEMAS_PER_LOAD)
        )  # fmt: skip
        try:
            with self._engine.connect() as conn:
                return [
                    ApprovedSchema(int(r[0]), bytes(r[1]), r[2], r[3], r[4])
                    for r in conn.execute(query)
                ]
        except SQLAlchemyError as exc:
            raise SchemaStoreError(f"cannot read the approved schemas: {exc}") from exc


def approved_identities(conn: Connection) -> dict[bytes, str]:
    """Every approved fingerprint and the identity it belongs to."""
    rows = conn.execute(select(TABLE.c.fingerprint, TABLE.c.identity))
    return {bytes(fp): identity for fp, identity in rows}


def approve(
    engine: Engine,
    text: str,
    release: Mapping[str, Mapping[str, Any]],
    approved_by: str,
    now: datetime | None = None,
) -> Approval:
    """Approve ``text`` as a writer schema if the policy allows it; never replaces one."""
    if not approved_by.strip() or len(approved_by) > MAX_APPROVER_CHARS:
        raise ValueError(f"approved_by must be 1 to {MAX_APPROVER_CHARS} characters")
    with engine.connect() as conn:
        assessment = assess(text, release, approved_identities(conn))
    candidate = assessment.candidate
    if assessment.refusal is not None:
        return Approval(ApprovalStatus.REFUSED, assessment.refusal, candidate)
    if candidate is None:  # assess gives a candidate whenever it refuses nothing
        raise RuntimeError("assessment without a candidate nor a refusal")
    if assessment.already_approved:
        return Approval(ApprovalStatus.ALREADY_APPROVED, "the same schema is approved", candidate)
    return _insert(engine, candidate, OPERATOR, approved_by, now or datetime.now(UTC))


def approve_release_schemas(
    engine: Engine, release_texts: Mapping[str, str], now: datetime | None = None
) -> list[Approval]:
    """Approve this release's own schemas (idempotent); refuse to run beside another schema.

    Raises ReleaseSchemaConflictError if the ledger holds a different schema under the
    fingerprint of one of them: the process must not start, or it would read another
    bank's messages in a meaning this release does not have.
    """
    with engine.connect() as conn:
        approved = approved_identities(conn)
    outcomes = []
    for event_type, text in sorted(release_texts.items()):
        candidate = Candidate(
            event_type, schema_text(text), schema_fingerprint(text), schema_identity(text)
        )
        held = approved.get(candidate.fingerprint)
        if held == candidate.identity:
            outcomes.append(Approval(ApprovalStatus.ALREADY_APPROVED, "", candidate))
            continue
        if held is not None:
            raise ReleaseSchemaConflictError(_conflict(candidate, held))
        outcome = _insert(engine, candidate, RELEASE, RELEASE_APPROVER, now or datetime.now(UTC))
        if outcome.status is ApprovalStatus.REFUSED:
            raise ReleaseSchemaConflictError(outcome.reason)
        outcomes.append(outcome)
    return outcomes


def _insert(
    engine: Engine, candidate: Candidate, origin: str, approved_by: str, now: datetime
) -> Approval:
    row = {
        "fingerprint": candidate.fingerprint, "identity": candidate.identity,
        "event_type": candidate.event_type, "schema_text": candidate.text, "origin": origin,
        "approved_by": approved_by.strip(), "approved_at": now,
    }  # fmt: skip
    try:
        with engine.begin() as conn:
            conn.execute(insert(TABLE), [row])
    except IntegrityError:  # approved meanwhile by another writer: first writer won
        with engine.connect() as conn:
            held = approved_identities(conn).get(candidate.fingerprint)
        if held == candidate.identity:
            return Approval(ApprovalStatus.ALREADY_APPROVED, "approved meanwhile", candidate)
        if held is not None:
            return Approval(ApprovalStatus.REFUSED, _conflict(candidate, held), candidate)
        raise
    return Approval(ApprovalStatus.APPROVED, f"approved ({origin})", candidate)


def _conflict(candidate: Candidate, held: str) -> str:
    return (
        f"{candidate.event_type}: fingerprint {candidate.fingerprint.hex()} is held by an "
        f"approved schema of identity {held[:16]}..., not this one ({candidate.identity[:16]}...)"
    )
