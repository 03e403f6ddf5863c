"""The one writer: turns a batch's decisions into ledger rows, in the caller's transaction.

Stages never write SQL. Each decision carries typed rows (the records below, one per
kind of write); the recorder groups a whole batch's rows by kind and writes each kind
with one DBAPI ``executemany`` of a statement compiled once per process. No ORM, no
per-row compilation: the only per-row work is the bind processors SQLAlchemy itself
would apply (SQLite's text form of a time, for one), looked up once per column.

Kinds are written in :data:`WRITE_ORDER`: a payment exists before its references and
transitions, and postings come last, because they lock their chains' heads until the
commit.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, Table, bindparam, literal_column
from sqlalchemy.engine import Dialect

from engine.ledger import notification_writes
from engine.ledger.exceptions import UnsupportedDatabaseError
from engine.ledger.models import (
    BankReference,
    DeadLetter,
    EmittedEvent,
    HandledEvent,
    Hold,
    LiquidityMovement,
    MessagesInHand,
    Payment,
    PaymentIso,
    PaymentStep,
    PaymentTransition,
    table_of,
)
from engine.ledger.notification_writes import (  # re-exported: stages import the rows from here
    AttemptMade as AttemptMade,
)
from engine.ledger.notification_writes import DueNotification as DueNotification
from engine.ledger.notification_writes import NotificationDone as NotificationDone
from engine.ledger.notification_writes import NotificationWrite
from engine.ledger.notification_writes import RetryLater as RetryLater
from engine.ledger.positions import (
    GuardRefused,
    LiquidityRecorded,
    PositionMoved,
    alert_notification,
    move_positions,
)
from engine.ledger.postings import PostingDraft, write_postings
from engine.ledger.prepared import Prepared, prepared, prepared_insert, prepared_update


class NewPayment(NamedTuple):
    """A payment as the validator first records it (validated or rejected)."""

    payment_id: str
    initiated_event_id: str
    bank_reference: str
    payer_bank: str
    payer_account: str
    payee_bank: str
    payee_account: str
    amount_minor: int
    currency: str
    channel: str
    payment_type: str
    merchant_category_code: str | None
    egov_service: str | None
    occurred_at: datetime
    state: str
    reason_code: str | None
    reason_message: str | None
    signer_bank: str | None
    signer_key_id: str | None
    signature: bytes | None
    signed_digest: bytes | None
    intent: str = "SALE"
    remittance_info: str | None = None


class PaymentIsoIds(NamedTuple):
    """A payment's ISO 20022 ids and extras, recorded with the payment (``payment_iso``)."""

    payment_id: str
    msg_id: str | None
    msg_name: str | None
    instr_id: str | None
    end_to_end_id: str | None
    tx_id: str | None
    uetr: str | None
    extras: str | None


class ReferenceTaken(NamedTuple):
    """A bank reference now belongs to a payment: the bank's retries are duplicates."""

    bank_code: str
    bank_reference: str
    payment_id: str


class Transition(NamedTuple):
    payment_id: str
    from_state: str | None
    to_state: str
    reason_code: str | None
    consumer: str
    event_id: str
    occurred_at: datetime


class Outcome(NamedTuple):
    """A payment's settlement outcome: its new state, with the fee and posting if settled.

    Guarded: applied only while the payment is still in ``from_state``, so of two
    instances deciding the same payment (a rebalance), the second one's batch fails
    and is planned again, and sees the first one's outcome.
    """

    payment_id: str
    from_state: str
    state: str
    reason_code: str | None
    reason_message: str | None
    fee_minor: int | None
    posting_id: str | None
    settlement_window: str | None
    captured_minor: int | None = None  # a settled payment: its amount; an authorization: 0


class HoldPlaced(NamedTuple):
    """An authorization's hold: ``reserved_minor`` off its payer's available balance."""

    payment_id: str
    account_number: str
    bank_code: str
    currency: str
    amount_minor: int
    fee_minor: int
    reserved_minor: int
    captured_minor: int
    state: str
    occurred_at: datetime
    expires_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None


class HoldChanged(NamedTuple):
    """A capture, void or expiry of a hold.

    Guarded: applied only while the hold is still in ``from_state`` with ``from_captured``
    captured, so of two steps decided on the same hold from the same view, one applies and
    the other's batch is planned again and sees it (a hold is never resolved twice, and
    captures never add up beyond it).
    """

    payment_id: str
    from_state: str
    from_captured: int
    state: str
    reserved_minor: int
    captured_minor: int
    resolved_at: datetime | None
    resolved_by: str | None


class PaymentProgress(NamedTuple):
    """A step's change to a payment's state and amounts (guarded on state and refunds)."""

    payment_id: str
    from_state: str
    from_refunded: int
    state: str
    captured_minor: int | None
    refunded_minor: int
    fee_minor: int | None


class StepRecorded(NamedTuple):
    """A step asked of a payment, applied or refused, with its posting if any."""

    step_id: str
    payment_id: str
    kind: str
    sender_bank: str
    bank_reference: str
    occurred_at: datetime
    amount_minor: int | None
    fee_minor: int
    currency: str | None
    outcome: str  # APPLIED | REFUSED
    reason_code: str | None
    reason_message: str | None
    posting_id: str | None
    settlement_window: str | None


class Handled(NamedTuple):
    """An event a stage handled: the idempotency record, written with the event's effects."""

    consumer: str
    event_id: str
    event_type: str
    payment_id: str | None
    topic: str
    partition: int
    offset: int
    outcome: str
    handled_at: datetime


class Emitted(NamedTuple):
    """An event a stage will produce (the outbox): a redelivery produces it again."""

    consumer: str
    source_event_id: str
    event_id: str
    payment_id: str | None
    topic: str
    key: bytes
    value: bytes


class DeadLettered(NamedTuple):
    consumer: str
    source_topic: str
    source_partition: int
    source_offset: int
    kind: str
    reason: str
    payment_id: str | None
    recorded_at: datetime


class InHandMarked(NamedTuple):
    """Offsets a stage instance is about to handle on a partition (``engine.pipeline.quarantine``).

    Written in a short transaction of its own before the batch is handled: an upsert
    of the partition's one row.
    """

    consumer: str
    topic: str
    partition: int
    first_offset: int
    last_offset: int
    deaths: int
    suspect_until: int | None
    owner: str
    marked_at: datetime


class InHandCleared(NamedTuple):
    """The batch's offsets are committed: nothing in hand. Only the mark's owner clears it."""

    consumer: str
    topic: str
    partition: int
    owner: str
    suspect_until: int | None


Write = (
    NewPayment | PaymentIsoIds | ReferenceTaken | Transition | Outcome | PostingDraft
    | NotificationWrite | Handled | Emitted
    | DeadLettered | HoldPlaced | HoldChanged | PaymentProgress | StepRecorded | InHandMarked
    | InHandCleared | PositionMoved | LiquidityRecorded
)  # fmt: skip


def _insert_of(model: Any, row_type: type[NamedTuple]) -> Callable[[Dialect], Prepared]:
    return lambda dialect: prepared_insert(table_of(model), dialect, row_type._fields)


def _upsert(table: Table, dialect: Dialect, columns: Sequence[str], keys: int) -> Prepared:
    """``INSERT ... ON CONFLICT (first ``keys`` columns) DO UPDATE`` the other columns."""
    if dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    elif dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert  # type: ignore[assignment]
    else:
        raise UnsupportedDatabaseError(
            f"the ledger runs on SQLite and PostgreSQL, not {dialect.name}"
        )
    values = {c: bindparam(c, type_=table.c[c].type) for c in columns}
    statement = dialect_insert(table).values(values)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c[c] for c in columns[:keys]],
        set_={c: statement.excluded[c] for c in columns[keys:]},
    )
    return Prepared(statement, dialect, columns)


STATEMENTS: dict[type, Callable[[Dialect], Prepared]] = {
    NewPayment: _insert_of(Payment, NewPayment),
    PaymentIsoIds: _insert_of(PaymentIso, PaymentIsoIds),
    ReferenceTaken: _insert_of(BankReference, ReferenceTaken),
    Outcome: lambda d: prepared_update(
        table_of(Payment), d, ("payment_id", "state"), Outcome._fields[2:]
    ),
    HoldPlaced: _insert_of(Hold, HoldPlaced),
    HoldChanged: lambda d: prepared_update(
        table_of(Hold), d, ("payment_id", "state", "captured_minor"), HoldChanged._fields[3:]
    ),
    PaymentProgress: lambda d: prepared_update(
        table_of(Payment), d, ("payment_id", "state", "refunded_minor"), PaymentProgress._fields[3:]
    ),
    StepRecorded: _insert_of(PaymentStep, StepRecorded),
    LiquidityRecorded: _insert_of(LiquidityMovement, LiquidityRecorded),
    **notification_writes.STATEMENTS,
    Transition: _insert_of(PaymentTransition, Transition),
    Handled: _insert_of(HandledEvent, Handled),
    Emitted: _insert_of(EmittedEvent, Emitted),
    DeadLettered: _insert_of(DeadLetter, DeadLettered),
    InHandMarked: lambda d: _upsert(table_of(MessagesInHand), d, InHandMarked._fields, 3),
    InHandCleared: lambda d: prepared_update(
        table_of(MessagesInHand),
        d,
        InHandCleared._fields[:4],
        ("suspect_until",),
        {"first_offset": None, "last_offset": None, "deaths": literal_column("0")},
    ),
}
# Each row of a guarded kind must find what it expects.
GUARDED = frozenset({Outcome, HoldChanged, PaymentProgress, *notification_writes.STRICT})
WRITE_ORDER: tuple[type, ...] = (
    NewPayment, PaymentIsoIds, ReferenceTaken, Outcome, HoldPlaced, HoldChanged, PaymentProgress,
    StepRecorded, LiquidityRecorded, Transition, *notification_writes.WRITE_ORDER, Handled,
    Emitted, DeadLettered, InHandMarked, InHandCleared,
    PostingDraft,  # it locks the chain heads, held from here to the commit
    PositionMoved,  # last: each bank's row, locked only for the commit (positions)
)  # fmt: skip


class GuardFailed(Exception):
    """A guarded update changed fewer rows than it was given: the caller must roll back."""


class Recorder:
    """Writes any mix of :data:`Write` rows in one pass: one ``executemany`` per kind.

    Guarded kinds (:data:`GUARDED`) must change every row they are given, or
    :class:`GuardFailed` is raised, so the caller's transaction rolls back whole.
    """

    def record(self, conn: Connection, writes: Iterable[Write]) -> None:
        grouped: dict[type, list[Any]] = defaultdict(list)
        for row in writes:
            grouped[type(row)].append(row)
        unknown = set(grouped) - set(WRITE_ORDER)
        if unknown:
            raise TypeError(
                f"the recorder has no statement for {sorted(t.__name__ for t in unknown)}"
            )
        for kind in WRITE_ORDER:
            rows = grouped.get(kind)
            if not rows:
                continue
            if kind is PostingDraft:
                write_postings(conn, rows)
                continue
            if kind is PositionMoved:
                self._move_positions(conn, rows)
                continue
            changed = prepared(conn, kind.__name__, STATEMENTS[kind]).run(conn, rows)
            if kind in GUARDED and changed != len(rows):
                raise GuardFailed(f"{kind.__name__}: {changed} of {len(rows)} rows still held")

    @staticmethod
    def _move_positions(conn: Connection, rows: Sequence[PositionMoved]) -> None:
        """The banks' rows, guarded; an alert for each crossing, in the same transaction."""
        try:
            crossed = move_positions(conn, rows)
        except GuardRefused as exc:
            raise GuardFailed(str(exc)) from exc
        to = next((r.alert_to for r in rows if r.alert_to is not None), None)
        if not crossed or to is None:
            return
        now = datetime.now(UTC)
        alerts = [alert_notification(c, to, now) for c in crossed]
        prepared(conn, DueNotification.__name__, STATEMENTS[DueNotification]).run(conn, alerts)
