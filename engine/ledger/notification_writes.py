"""The rows that change a notification: each transition a guarded update, written by the recorder.

Nothing else writes ``notifications`` (or its attempts and redelivery requests): the
notification stage, the delivery loop and an operator's redelivery each hand these rows
to :class:`engine.ledger.recorder.Recorder`. Every update names what it expects to find
(the state, the attempt count, the lease or the round) and changes nothing otherwise, so
of two writers racing for one notification exactly one wins. The transitions are those
of :mod:`engine.domain.notifications`.

Two kinds are strict (:data:`STRICT`): finishing a notification and redelivering it must
find every row as expected, or the recorder raises and the transaction rolls back. The
others may find a row moved on: a claim lost to another dispatcher, a lease already
taken over, an announcement after a redelivery. Those who write them read back what is
theirs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import bindparam, literal_column, null, update
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.elements import ColumnElement

from engine.domain.notifications import FINISHED, NotificationStatus
from engine.ledger.models import Notification, NotificationAttempt, NotificationRedelivery, table_of
from engine.ledger.prepared import Prepared, prepared_insert


class DueNotification(NamedTuple):
    """A notification to deliver: PENDING, due at ``next_attempt_at``, until ``deadline_at``."""

    notification_id: str
    payment_id: str
    outcome: str
    recipient_bank: str
    sender: str
    status: str
    attempts: int
    payload: str
    source_event_id: str
    created_at: datetime
    next_attempt_at: datetime
    deadline_at: datetime
    round: int


class NotificationClaimed(NamedTuple):
    """A dispatcher leases a due notification until ``next_attempt_at``, under ``claim_token``.

    Applied only while it is still PENDING, at ``attempts`` and due by ``due_by``: of two
    dispatchers racing for it, the first takes it and the second finds it leased.
    """

    notification_id: str
    attempts: int
    due_by: datetime
    claim_token: str
    next_attempt_at: datetime


class AttemptMade(NamedTuple):
    """One delivery attempt of a notification, as the sender reported it."""

    notification_id: str
    number: int
    started_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None


class RetryLater(NamedTuple):
    """A failed attempt: the notification is due again at ``next_attempt_at``, lease given back.

    Applied only while the dispatcher's lease (``claim_token``) holds, it is PENDING and
    still at ``from_attempts``.
    """

    notification_id: str
    claim_token: str
    from_attempts: int
    next_attempt_at: datetime
    attempts: int
    last_error: str | None


class NotificationDone(NamedTuple):
    """A notification finished: DELIVERED, or FAILED at its horizon (same guard as a retry)."""

    notification_id: str
    claim_token: str
    from_attempts: int
    status: str
    attempts: int
    last_error: str | None
    finished_at: datetime


class LeaseReleased(NamedTuple):
    """A lease given back unattempted (a stop): due again at ``next_attempt_at``, for anyone."""

    notification_id: str
    claim_token: str
    next_attempt_at: datetime


class NotificationAnnounced(NamedTuple):
    """A finished notification's ``PaymentNotified`` reached the broker: no sweep needs it.

    Applied only while it is finished and not yet announced: one redelivered meanwhile
    (PENDING again) waits for its own round's announcement.
    """

    notification_id: str
    announced_at: datetime


class NotificationRedelivered(NamedTuple):
    """An operator puts a given-up notification back on the schedule, as a new round.

    Applied only while it is FAILED in ``from_round``.
    """

    notification_id: str
    from_round: int
    round: int
    next_attempt_at: datetime
    deadline_at: datetime


class RedeliveryRequested(NamedTuple):
    """Who asked for a redelivery, when and why: written with the redelivery itself."""

    notification_id: str
    round: int
    requested_by: str
    requested_at: datetime
    reason: str | None


NotificationWrite = (
    DueNotification | NotificationClaimed | AttemptMade | RetryLater | NotificationDone
    | LeaseReleased | NotificationAnnounced | NotificationRedelivered | RedeliveryRequested
)  # fmt: skip


def _state(state: NotificationStatus) -> ColumnElement[Any]:
    return literal_column(f"'{state.value}'")


def _guarded(
    row_type: type[NamedTuple],
    keys: Mapping[str, str],
    constants: Mapping[str, Any],
    guard: Callable[[Any], Sequence[ColumnElement[bool]]],
) -> Callable[[Dialect], Prepared]:
    """``UPDATE notifications SET <the row's other fields>, <constants> WHERE <keys> AND <guard>``.

    ``keys`` maps the row's leading fields to the columns they must equal; the rest of
    the row's fields are columns set to the row's values.
    """
    table = table_of(Notification)
    set_fields = row_type._fields[len(keys) :]
    if tuple(keys) != row_type._fields[: len(keys)]:
        raise ValueError(f"{row_type.__name__}: keys must be its leading fields")

    def build(dialect: Dialect) -> Prepared:
        values: dict[str, Any] = {f: bindparam(f, type_=table.c[f].type) for f in set_fields}
        values.update({c: null() if v is None else v for c, v in constants.items()})
        statement = update(table).values(values)
        for field, column in keys.items():
            statement = statement.where(
                table.c[column] == bindparam(f"where_{field}", type_=table.c[column].type)
            )
        statement = statement.where(*guard(table))
        return Prepared(statement, dialect, (*(f"where_{f}" for f in keys), *set_fields))

    return build


def _claim(dialect: Dialect) -> Prepared:
    """The claim's guard compares a time (due by now), so it is built apart."""
    t = table_of(Notification)
    statement = (
        update(t)
        .values(
            claim_token=bindparam("claim_token", type_=t.c.claim_token.type),
            next_attempt_at=bindparam("next_attempt_at", type_=t.c.next_attempt_at.type),
        )
        .where(
            t.c.notification_id == bindparam("where_id", type_=t.c.notification_id.type),
            t.c.attempts == bindparam("where_attempts", type_=t.c.attempts.type),
            t.c.next_attempt_at <= bindparam("where_due_by", type_=t.c.next_attempt_at.type),
            t.c.status == _state(NotificationStatus.PENDING),
        )
    )
    binds = ("where_id", "where_attempts", "where_due_by", "claim_token", "next_attempt_at")
    return Prepared(statement, dialect, binds)


_LEASED = {"notification_id": "notification_id", "claim_token": "claim_token"}
_LEASED_AT = {**_LEASED, "from_attempts": "attempts"}

STATEMENTS: dict[type, Callable[[Dialect], Prepared]] = {
    DueNotification: lambda d: prepared_insert(table_of(Notification), d, DueNotification._fields),
    NotificationClaimed: _claim,
    AttemptMade: lambda d: prepared_insert(table_of(NotificationAttempt), d, AttemptMade._fields),
    RetryLater: _guarded(
        RetryLater, _LEASED_AT, {"claim_token": None},
        lambda t: (t.c.status == _state(NotificationStatus.PENDING),),
    ),
    NotificationDone: _guarded(
        NotificationDone, _LEASED_AT, {"claim_token": None, "next_attempt_at": None},
        lambda t: (t.c.status == _state(NotificationStatus.PENDING),),
    ),
    LeaseReleased: _guarded(
        LeaseReleased, _LEASED, {"claim_token": None},
        lambda t: (t.c.status == _state(NotificationStatus.PENDING),),
    ),
    NotificationAnnounced: _guarded(
        NotificationAnnounced, {"notification_id": "notification_id"}, {},
        lambda t: (t.c.status.in_([_state(s) for s in FINISHED]), t.c.announced_at.is_(None)),
    ),
    NotificationRedelivered: _guarded(
        NotificationRedelivered, {"notification_id": "notification_id", "from_round": "round"},
        {"status": _state(NotificationStatus.PENDING), "finished_at": None, "announced_at": None,
         "claim_token": None},
        lambda t: (t.c.status == _state(NotificationStatus.FAILED),),
    ),
    RedeliveryRequested: lambda d: prepared_insert(
        table_of(NotificationRedelivery), d, RedeliveryRequested._fields
    ),
}  # fmt: skip

# Must change every row they are given; the others may find a row moved on.
STRICT = frozenset({NotificationDone, NotificationRedelivered})
# The order the recorder writes them in: a notification exists before its attempts, a
# round is reopened before its request is recorded.
WRITE_ORDER: tuple[type, ...] = (
    DueNotification, NotificationClaimed, AttemptMade, RetryLater, NotificationDone,
    LeaseReleased, NotificationAnnounced, NotificationRedelivered, RedeliveryRequested,
)  # fmt: skip
