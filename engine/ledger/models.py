"""The ledger's tables: reference data, payments, double-entry postings, consumer bookkeeping.

Invariants the code and the database enforce together:
- a posting's entries sum to zero per currency (``engine.ledger.postings`` refuses
  anything else before it reaches the database);
- ledger entries are append-only (database triggers refuse UPDATE and DELETE;
  a correction is a reversing posting);
- an account's ``balance_minor`` equals the sum of its entries: both change in
  the same transaction, and ``sakk audit verify`` checks it;
- ``handled_events`` holds each (consumer, event_id) once: the primary key is what
  makes redelivered messages harmless;
- ids a bank supplied are kept in its namespace, ``BANK:id`` (``engine.ids``), so every
  unique key on them (payments, their initiating events, steps, handled events) is
  per bank: no bank can make another's id a duplicate.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from engine.domain.states import PaymentState as PaymentState  # the catalog's, re-exported
from engine.domain.steps import StepKind as StepKind
from engine.ids import SWITCH_ID_MAX_CHARS

# BIGINT autoincrement keys on PostgreSQL; SQLite only autoincrements INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer, "sqlite")
# A column holding a bank's id as the switch keeps it, "BANK:id" (engine.ids); derived
# ids (UUIDs) fit too. Ids from before namespaces are shorter.
SwitchId = String(SWITCH_ID_MAX_CHARS)

# An account's last four characters, as indexed (0021) and searched (engine.read.payments):
# the same text on SQLite and PostgreSQL.
LAST4_SQL = "substr({column}, length({column}) - 3)"

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def table_of(model: type[Base]) -> Table:
    """A model's Table, typed as one (``__table__`` is typed as any FromClause)."""
    return cast(Table, model.__table__)


class AccountKind(enum.StrEnum):
    CUSTOMER = "CUSTOMER"
    MERCHANT = "MERCHANT"
    GOVERNMENT = "GOVERNMENT"
    FEE_INCOME = "FEE_INCOME"
    SETTLEMENT = "SETTLEMENT"
    CASH = "CASH"
    FUNDING = "FUNDING"  # the bank's equity: opening balances are posted against it
    LIQUIDITY = "LIQUIDITY"  # what the bank deposited at the switch to cover its position


class AccountStatus(enum.StrEnum):
    ACTIVE = "ACTIVE"
    BLOCKED = "BLOCKED"
    CLOSED = "CLOSED"


class PaymentIntent(enum.StrEnum):
    SALE = "SALE"  # settled in one step
    AUTHORIZATION = "AUTHORIZATION"  # a hold first, captured later


class HoldState(enum.StrEnum):
    ACTIVE = "ACTIVE"  # reserves reserved_minor on the payer's available balance
    CAPTURED = "CAPTURED"  # resolved by a final (or full) capture
    VOIDED = "VOIDED"
    EXPIRED = "EXPIRED"


class Bank(Base):
    __tablename__ = "banks"

    code: Mapped[str] = mapped_column(String(8), primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    bic: Mapped[str | None] = mapped_column(String(11))
    webhook_url: Mapped[str | None] = mapped_column(String(500))
    notification_format: Mapped[str | None] = mapped_column(String(8))  # json | pacs.002


class BankKey(Base):
    """A bank's Ed25519 public key and when it may sign (rotation: two can be valid at once).

    The switch holds public keys only; a bank's private key never leaves the bank.
    """

    __tablename__ = "bank_keys"
    __table_args__ = (
        CheckConstraint("valid_until IS NULL OR valid_until > valid_from", name="window"),
    )

    bank_code: Mapped[str] = mapped_column(ForeignKey("banks.code"), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    public_key: Mapped[str] = mapped_column(String(64))  # base64 of the 32 raw bytes
    valid_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    valid_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Account(Base):
    __tablename__ = "accounts"
    __table_args__ = (
        CheckConstraint(
            "overdraft_limit_minor IS NULL OR overdraft_limit_minor >= 0", name="overdraft"
        ),
        CheckConstraint("length(currency) = 3", name="currency"),
    )

    number: Mapped[str] = mapped_column(String(34), primary_key=True)
    bank_code: Mapped[str] = mapped_column(ForeignKey("banks.code"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    holder: Mapped[str] = mapped_column(String(120))
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(8), default=AccountStatus.ACTIVE)
    # NULL: no limit (internal accounts of banks and the switch may go negative).
    overdraft_limit_minor: Mapped[int | None] = mapped_column(BigInteger, default=0)
    balance_minor: Mapped[int] = mapped_column(BigInteger, default=0)


class AccountBalanceDelta(Base):
    """A change to an account's balance not yet folded into ``accounts.balance_minor``.

    Credits, and debits to accounts without a limit, are appended here instead of
    updating the account row, so the rows every payment touches (a bank's settlement
    account, its fee income, a busy merchant) are never locked by a settlement batch.
    An account's balance is its row plus its deltas (``engine.ledger.balances``);
    folding moves deltas into the row, so this table stays short.
    """

    __tablename__ = "account_balance_deltas"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_number: Mapped[str] = mapped_column(ForeignKey("accounts.number"), index=True)
    delta_minor: Mapped[int] = mapped_column(BigInteger)


class FeeRule(Base):
    """Fee for a (channel, payment type): fixed part + basis points of the amount, capped."""

    __tablename__ = "fee_rules"
    __table_args__ = (
        CheckConstraint("fixed_minor >= 0 AND rate_bps >= 0 AND rate_bps <= 10000", name="fee"),
    )

    channel: Mapped[str] = mapped_column(String(8), primary_key=True)
    payment_type: Mapped[str] = mapped_column(String(16), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    fixed_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    rate_bps: Mapped[int] = mapped_column(Integer, default=0)
    max_minor: Mapped[int | None] = mapped_column(BigInteger)


class BankLimit(Base):
    """A bank's net debit cap in one currency and the share of it that alerts it
    (``engine.risk.limits``). A bank without a row is not bounded in that currency."""

    __tablename__ = "bank_limits"
    __table_args__ = (
        CheckConstraint("net_debit_cap_minor >= 0", name="cap_not_negative"),
        CheckConstraint("alert_percent BETWEEN 1 AND 100", name="alert_percent_range"),
    )

    bank_code: Mapped[str] = mapped_column(ForeignKey("banks.code"), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    net_debit_cap_minor: Mapped[int] = mapped_column(BigInteger)
    alert_percent: Mapped[int] = mapped_column(Integer)


class BankPosition(Base):
    """A bank's running interbank position in one currency (``engine.ledger.positions``).

    ``posted_minor``: the net of every interbank posting ever posted, positive when the
    bank sent more than it received (settled windows lower the exposure, not this);
    ``holds_minor``: its payers' active interbank holds; ``liquidity_minor``: the balance
    of its liquidity account, kept here too so the guarded update that moves the position
    reads the liquidity in the same row.
    """

    __tablename__ = "bank_positions"

    bank_code: Mapped[str] = mapped_column(ForeignKey("banks.code"), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    posted_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    holds_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    liquidity_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    version: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PositionChange(Base):
    """One change of a bank's position row, in the order the rows changed (``id``).

    Written in the transaction that changes the ``bank_positions`` row, right after the
    update that locks it until commit, so for one bank ``id`` order is the order its row
    changed (``engine.ledger.positions``). Never updated or deleted (triggers refuse both).
    ``cause``: ``PAYMENTS``, ``FUNDS_IN``, ``FUNDS_OUT`` (joined by ``+`` when one batch
    had several), ``OPENED`` (a row created or seeded), ``LIMITS`` (the cap changed),
    ``SETTLED`` (a window settled). ``refs``: a JSON list naming what caused it (payment
    or movement ids, an operator action, a window), at most ``MAX_REFS``; ``ref_count`` all.
    """

    __tablename__ = "position_changes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    bank_code: Mapped[str] = mapped_column(String(8))
    currency: Mapped[str] = mapped_column(String(3))
    cause: Mapped[str] = mapped_column(String(40))
    refs: Mapped[str] = mapped_column(Text)  # JSON list
    ref_count: Mapped[int] = mapped_column(Integer)
    posted_delta_minor: Mapped[int] = mapped_column(BigInteger)
    holds_delta_minor: Mapped[int] = mapped_column(BigInteger)
    liquidity_delta_minor: Mapped[int] = mapped_column(BigInteger)
    settled_delta_minor: Mapped[int] = mapped_column(BigInteger)
    exposure_before_minor: Mapped[int] = mapped_column(BigInteger)  # posted + holds
    exposure_after_minor: Mapped[int] = mapped_column(BigInteger)
    liquidity_after_minor: Mapped[int] = mapped_column(BigInteger)
    cap_minor: Mapped[int | None] = mapped_column(BigInteger)  # checked; LIMITS: the new cap
    liquidity_checked_minor: Mapped[int | None] = mapped_column(BigInteger)
    settled_minor: Mapped[int] = mapped_column(BigInteger)  # what the check took off
    read_version: Mapped[int | None] = mapped_column(BigInteger)  # the batch's snapshot's
    version: Mapped[int] = mapped_column(BigInteger)  # the row's version once changed
    occurred_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_position_changes_bank", "bank_code", "currency", "id"),)


class LiquidityMovement(Base):
    """A ``FundsIn`` or ``FundsOut`` as settlement decided it: posted, or refused with why."""

    __tablename__ = "liquidity_movements"

    movement_id: Mapped[str] = mapped_column(SwitchId, primary_key=True)
    bank_code: Mapped[str] = mapped_column(String(8), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    kind: Mapped[str] = mapped_column(String(9))  # FUNDS_IN | FUNDS_OUT
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    outcome: Mapped[str] = mapped_column(String(8))  # POSTED | REFUSED
    reason_code: Mapped[str | None] = mapped_column(String(4))
    reason_message: Mapped[str | None] = mapped_column(String(500))
    posting_id: Mapped[str | None] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ChannelLimit(Base):
    __tablename__ = "channel_limits"
    __table_args__ = (CheckConstraint("max_amount_minor > 0", name="positive"),)

    channel: Mapped[str] = mapped_column(String(8), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    max_amount_minor: Mapped[int] = mapped_column(BigInteger)
    # How long an authorization's hold lives on this channel (None: Settings.hold_expiry_s).
    hold_expiry_s: Mapped[int | None] = mapped_column(Integer)


class Payment(Base):
    """Current state of a payment; its history is in ``payment_transitions``."""

    __tablename__ = "payments"
    __table_args__ = (
        # The read side's keyset pages, newest first: one bank's payments (0013); every
        # payment, or those of one state, reason or channel, or of one account's last four
        # digits on either side (0021: engine.read.payments walks each side on its own).
        Index("ix_payments_payer_bank_occurred", "payer_bank", "occurred_at", "payment_id"),
        Index("ix_payments_payee_bank_occurred", "payee_bank", "occurred_at", "payment_id"),
        Index("ix_payments_occurred", "occurred_at", "payment_id"),
        Index("ix_payments_state_occurred", "state", "occurred_at", "payment_id"),
        Index("ix_payments_reason_occurred", "reason_code", "occurred_at", "payment_id"),
        Index("ix_payments_channel_occurred", "channel", "occurred_at", "payment_id"),
        Index("ix_payments_bank_reference", "bank_reference"),
        Index("ix_payments_payer_last4", text(LAST4_SQL.format(column="payer_account")),
              "occurred_at", "payment_id"),
        Index("ix_payments_payee_last4", text(LAST4_SQL.format(column="payee_account")),
              "occurred_at", "payment_id"),
        # A bank's own payments of one state or channel, whichever is rare (0021).
        Index("ix_payments_payer_bank_state", "payer_bank", "state", "occurred_at", "payment_id"),
        Index("ix_payments_payee_bank_state", "payee_bank", "state", "occurred_at", "payment_id"),
        Index("ix_payments_payer_bank_channel", "payer_bank", "channel", "occurred_at",
              "payment_id"),
        Index("ix_payments_payee_bank_channel", "payee_bank", "channel", "occurred_at",
              "payment_id"),
    )  # fmt: skip

    payment_id: Mapped[str] = mapped_column(SwitchId, primary_key=True)
    initiated_event_id: Mapped[str] = mapped_column(SwitchId, unique=True)
    bank_reference: Mapped[str] = mapped_column(String(35))
    payer_bank: Mapped[str] = mapped_column(String(8))
    payer_account: Mapped[str] = mapped_column(String(34))
    payee_bank: Mapped[str] = mapped_column(String(8))
    payee_account: Mapped[str] = mapped_column(String(34))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    channel: Mapped[str] = mapped_column(String(8))
    payment_type: Mapped[str] = mapped_column(String(16))
    merchant_category_code: Mapped[str | None] = mapped_column(String(4))
    egov_service: Mapped[str | None] = mapped_column(String(32))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    state: Mapped[str] = mapped_column(String(10))
    reason_code: Mapped[str | None] = mapped_column(String(4))
    reason_message: Mapped[str | None] = mapped_column(String(300))
    fee_minor: Mapped[int | None] = mapped_column(BigInteger)
    posting_id: Mapped[str | None] = mapped_column(String(64))
    settlement_window: Mapped[str | None] = mapped_column(String(32), index=True)
    # Proof of origin (non-repudiation): the bank's signature over signed_digest, which
    # binds topic, key and value of the PaymentInitiated it sent, by key signer_key_id of
    # signer_bank. (When the key was judged valid is not stored: it is the moment the
    # validator handled the event, and a replay must reproduce this row exactly.)
    signer_bank: Mapped[str | None] = mapped_column(String(8))
    signer_key_id: Mapped[str | None] = mapped_column(String(64))
    signature: Mapped[bytes | None] = mapped_column(LargeBinary)
    signed_digest: Mapped[bytes | None] = mapped_column(LargeBinary)
    intent: Mapped[str] = mapped_column(String(13), server_default=text("'SALE'"))
    # Captured so far (a settled one-step payment: its amount) and refunded or returned so
    # far: a refund may take at most captured_minor - refunded_minor.
    captured_minor: Mapped[int | None] = mapped_column(BigInteger)
    refunded_minor: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    remittance_info: Mapped[str | None] = mapped_column(String(140))  # ISO 20022 Ustrd


class PaymentIso(Base):
    """The ISO 20022 ids and extras of a payment that came in as ISO 20022 (0..1 per payment).

    The bank's ``MsgId``, message name, ``InstrId``, ``EndToEndId``, ``TxId`` and ``UETR``,
    echoed in every answer (pacs.002, pacs.004, the JSON notification) so that the bank
    matches it; ``extras``: what the transaction held that Sakk does not act on (postal
    addresses, structured remittance, ...), JSON, for audit. Personal data: never logged.
    """

    __tablename__ = "payment_iso"

    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.payment_id"), primary_key=True)
    msg_id: Mapped[str | None] = mapped_column(String(35))
    msg_name: Mapped[str | None] = mapped_column(String(35))
    instr_id: Mapped[str | None] = mapped_column(String(35))
    end_to_end_id: Mapped[str | None] = mapped_column(String(35))
    tx_id: Mapped[str | None] = mapped_column(String(35))
    uetr: Mapped[str | None] = mapped_column(String(36))
    extras: Mapped[str | None] = mapped_column(Text)


class Hold(Base):
    """The funds an authorization reserves on its payer's account, until it is resolved.

    The payer's available balance is balance + overdraft - the ``reserved_minor`` of its
    ACTIVE holds. A hold is resolved once (captured in full or finally, voided, expired);
    each change is a guarded update on (state, captured_minor), so two decisions on one
    hold never both apply.
    """

    __tablename__ = "holds"
    __table_args__ = (
        CheckConstraint(
            "captured_minor >= 0 AND captured_minor <= amount_minor AND reserved_minor >= 0",
            name="amounts",
        ),
        CheckConstraint("state = 'ACTIVE' OR reserved_minor = 0", name="released"),
        Index("ix_holds_active", "account_number", "state"),
        Index("ix_holds_expiry", "state", "expires_at"),
    )

    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.payment_id"), primary_key=True)
    account_number: Mapped[str] = mapped_column(String(34))
    bank_code: Mapped[str] = mapped_column(String(8))
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)  # authorized
    fee_minor: Mapped[int] = mapped_column(BigInteger)  # the fee on the whole amount, reserved
    reserved_minor: Mapped[int] = mapped_column(BigInteger)  # still reserved
    captured_minor: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(10))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_by: Mapped[str | None] = mapped_column(SwitchId)  # the step that resolved it


class PaymentStep(Base):
    """Every step asked of a payment after its first answer, applied or refused."""

    __tablename__ = "payment_steps"

    step_id: Mapped[str] = mapped_column(SwitchId, primary_key=True)
    payment_id: Mapped[str] = mapped_column(SwitchId, index=True)
    kind: Mapped[str] = mapped_column(String(10))
    sender_bank: Mapped[str] = mapped_column(String(8))
    bank_reference: Mapped[str] = mapped_column(String(35))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    fee_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    outcome: Mapped[str] = mapped_column(String(8))  # APPLIED | REFUSED
    reason_code: Mapped[str | None] = mapped_column(String(4))
    reason_message: Mapped[str | None] = mapped_column(String(300))
    posting_id: Mapped[str | None] = mapped_column(String(64))
    settlement_window: Mapped[str | None] = mapped_column(String(32))


class PaymentTransition(Base):
    """Append-only history of each payment's state changes."""

    __tablename__ = "payment_transitions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    payment_id: Mapped[str] = mapped_column(SwitchId, index=True)
    from_state: Mapped[str | None] = mapped_column(String(10))
    to_state: Mapped[str] = mapped_column(String(10))
    reason_code: Mapped[str | None] = mapped_column(String(4))
    consumer: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(SwitchId)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class BankReference(Base):
    """First payment accepted for each (bank, reference): the key a bank retries with."""

    __tablename__ = "bank_references"

    bank_code: Mapped[str] = mapped_column(String(8), primary_key=True)
    bank_reference: Mapped[str] = mapped_column(String(35), primary_key=True)
    payment_id: Mapped[str] = mapped_column(SwitchId)


class Posting(Base):
    __tablename__ = "postings"

    posting_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # A payment's postings: its settlement or its captures, then its refunds or return.
    payment_id: Mapped[str] = mapped_column(SwitchId, index=True)
    kind: Mapped[str] = mapped_column(String(16), default="PAYMENT")  # PAYMENT, CAPTURE, ...
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    settlement_window: Mapped[str] = mapped_column(String(32), index=True)


class LedgerEntry(Base):
    """One leg of a posting: a signed amount on one account (append-only).

    Entries form one hash chain per ``chain_id``, in ``chain_seq`` order: ``entry_hash``
    covers the entry, its posting and ``prev_hash``, the hash of the entry before it in
    the same chain (see ``engine.ledger.postings.entry_hash``), so altering, deleting or
    inserting an entry breaks its chain from there on.
    """

    __tablename__ = "ledger_entries"
    __table_args__ = (UniqueConstraint("chain_id", "chain_seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    posting_id: Mapped[str] = mapped_column(ForeignKey("postings.posting_id"), index=True)
    account_number: Mapped[str] = mapped_column(ForeignKey("accounts.number"), index=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    # The chain key (a partition of the settlement input topic); 0 for entries written
    # before chain keys existed.
    chain_id: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    chain_seq: Mapped[int] = mapped_column(BigInteger)  # 1, 2, 3, ... per chain, no gaps
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64))


class LedgerChainHead(Base):
    """The last link of one hash chain: one row per chain, locked by every append to it.

    Chain 0's row exists from the first migration on; any other chain's row is created
    by the first append to it (``engine.ledger.postings.lock_chain_heads``).
    """

    __tablename__ = "ledger_chain_head"
    __table_args__ = (CheckConstraint("chain_id >= 0", name="chain_id"),)

    chain_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)  # chain_seq of the chain's last entry, 0 if none
    head_hash: Mapped[str] = mapped_column(String(64))


class SettlementWindow(Base):
    """A closed settlement window: its net positions are final.

    The close records the head of every chain (``settlement_window_chain_heads``). A
    posting counts in the window of its ``occurred_at`` if its entries are at or below
    the head the close recorded for their chain (written before the close); a later
    one, or one on a chain the close did not know, is carried into the next window
    still open when it was written. ``chain_seq`` and ``chain_hash`` repeat chain 0's
    head, as readers from before chain keys knew it.
    """

    __tablename__ = "settlement_windows"

    label: Mapped[str] = mapped_column(String(32), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    window_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    window_hours: Mapped[int] = mapped_column(Integer)
    closed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    chain_seq: Mapped[int] = mapped_column(BigInteger)  # chain 0's head at the close
    chain_hash: Mapped[str] = mapped_column(String(64))
    postings: Mapped[int] = mapped_column(BigInteger)
    event_id: Mapped[str] = mapped_column(String(64))
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SettlementWindowChainHead(Base):
    """The head of one chain when a window closed: every chain that had a head then."""

    __tablename__ = "settlement_window_chain_heads"

    label: Mapped[str] = mapped_column(ForeignKey("settlement_windows.label"), primary_key=True)
    chain_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    head_hash: Mapped[str] = mapped_column(String(64))


class SettlementWindowPosition(Base):
    """A bank's net position in a closed window, as recorded at the close."""

    __tablename__ = "settlement_window_positions"

    label: Mapped[str] = mapped_column(ForeignKey("settlement_windows.label"), primary_key=True)
    bank_code: Mapped[str] = mapped_column(String(8), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    gross_debits_minor: Mapped[int] = mapped_column(BigInteger)
    gross_credits_minor: Mapped[int] = mapped_column(BigInteger)
    net_minor: Mapped[int] = mapped_column(BigInteger)


class SettlementWindowEvent(Base):
    """One transition of a settlement window's lifecycle (``engine.risk.windows``).

    Rows are numbered per window (``seq`` from 1) and chained per window: ``row_hash``
    covers the row and ``prev_hash``, the previous row's hash. A window's state is its
    last row; a row is never updated or deleted (database triggers refuse both), and the
    unique ``(window_label, seq)`` lets only one of two racing transitions in.
    """

    __tablename__ = "settlement_window_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    window_label: Mapped[str] = mapped_column(String(32))
    seq: Mapped[int] = mapped_column(Integer)
    event: Mapped[str] = mapped_column(String(8))  # close | settle | confirm | abort
    state: Mapped[str] = mapped_column(String(10))  # the state after the event
    attempt: Mapped[int] = mapped_column(Integer)
    instruction_ids: Mapped[str] = mapped_column(Text)  # JSON list, one per currency
    document_sha256: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    row_hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (UniqueConstraint("window_label", "seq", name="seq"),)


class WindowSettlement(Base):
    """A bank's net settled in a SETTLED window, position sign (+ when the bank paid).

    Written in the transaction that settles the window; never updated or deleted. A bank's
    exposure is its posted position less the sum of these rows (``settled_nets``).
    """

    __tablename__ = "window_settlements"

    window_label: Mapped[str] = mapped_column(String(32), primary_key=True)
    bank_code: Mapped[str] = mapped_column(String(8), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    net_minor: Mapped[int] = mapped_column(BigInteger)
    settled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ReplayRun(Base):
    """What a replay read (topic, offsets per partition, selection) into this ledger."""

    __tablename__ = "replay_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(120))
    selection: Mapped[str] = mapped_column(String(16))  # offsets | record-time | occurred-at
    from_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    to_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ranges: Mapped[str] = mapped_column(Text)  # JSON: partition, start, end, from_beginning
    reference_file: Mapped[str] = mapped_column(String(500))
    reference_sha256: Mapped[str] = mapped_column(String(64))
    events_read: Mapped[int] = mapped_column(BigInteger)
    events_replayed: Mapped[int] = mapped_column(BigInteger)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    seconds: Mapped[float] = mapped_column(Float)


class HandledEvent(Base):
    """Every event a consumer handled, with where it came from.

    The primary key (consumer, event_id) makes consumers idempotent: it is written
    in the same transaction as the event's effects.
    """

    __tablename__ = "handled_events"

    consumer: Mapped[str] = mapped_column(String(32), primary_key=True)
    event_id: Mapped[str] = mapped_column(SwitchId, primary_key=True)
    event_type: Mapped[str] = mapped_column(String(32))
    payment_id: Mapped[str | None] = mapped_column(SwitchId, index=True)
    topic: Mapped[str] = mapped_column(String(120))
    partition: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)
    outcome: Mapped[str] = mapped_column(String(16))
    handled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class EmittedEvent(Base):
    """Events a consumer produced for a handled event, kept so a redelivery re-sends them."""

    __tablename__ = "emitted_events"
    __table_args__ = (Index("ix_emitted_events_source", "consumer", "source_event_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    consumer: Mapped[str] = mapped_column(String(32))
    source_event_id: Mapped[str] = mapped_column(SwitchId)
    event_id: Mapped[str] = mapped_column(SwitchId)
    payment_id: Mapped[str | None] = mapped_column(SwitchId, index=True)
    topic: Mapped[str] = mapped_column(String(120))
    key: Mapped[bytes] = mapped_column(LargeBinary)
    value: Mapped[bytes] = mapped_column(LargeBinary)


class MessagesInHand(Base):
    """The offsets a stage instance is handling on one partition, marked before it handles them.

    Written in a short transaction of its own before a polled batch is handled, and
    cleared (``first_offset`` and ``last_offset`` NULL) by the transaction that commits
    the batch: offsets still marked when the partition is polled again mean a process
    died handling them. ``deaths`` counts the deaths of the range in hand;
    ``suspect_until`` is the last offset to handle one message at a time after a death
    (``engine.pipeline.quarantine``). ``owner`` is the instance that marked it: only its
    own commit clears it.
    """

    __tablename__ = "messages_in_hand"
    __table_args__ = (
        CheckConstraint(
            "(first_offset IS NULL AND last_offset IS NULL) OR first_offset <= last_offset",
            name="range",
        ),
        CheckConstraint("deaths >= 0", name="deaths"),
    )

    consumer: Mapped[str] = mapped_column(String(32), primary_key=True)
    topic: Mapped[str] = mapped_column(String(120), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    first_offset: Mapped[int | None] = mapped_column(BigInteger)
    last_offset: Mapped[int | None] = mapped_column(BigInteger)
    deaths: Mapped[int] = mapped_column(Integer)
    suspect_until: Mapped[int | None] = mapped_column(BigInteger)
    owner: Mapped[str] = mapped_column(String(64))
    marked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class DeadLetter(Base):
    """A message that could not be handled, with its reason and source coordinates."""

    __tablename__ = "dead_letters"
    __table_args__ = (
        UniqueConstraint("consumer", "source_topic", "source_partition", "source_offset"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    consumer: Mapped[str] = mapped_column(String(32))
    source_topic: Mapped[str] = mapped_column(String(120))
    source_partition: Mapped[int] = mapped_column(Integer)
    source_offset: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    payment_id: Mapped[str | None] = mapped_column(SwitchId, index=True)  # a trace's (0021)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Notification(Base):
    """One outcome told to one bank: never sent twice (the id is derived from what and whom).

    Its delivery schedule lives here, so it survives restarts and kills: a PENDING
    notification is tried again at ``next_attempt_at`` until ``deadline_at`` (the
    horizon), then it is FAILED. ``claim_token`` marks the dispatcher that holds it
    (until ``next_attempt_at``, its lease); ``announced_at`` is set once its
    ``PaymentNotified`` reached Kafka. ``round`` counts operator redeliveries.
    """

    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_due", "status", "recipient_bank", "next_attempt_at"),
        Index("ix_notifications_created", "created_at", "notification_id"),  # read side (0013)
    )

    notification_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    payment_id: Mapped[str] = mapped_column(SwitchId, index=True)
    outcome: Mapped[str] = mapped_column(String(10))
    recipient_bank: Mapped[str] = mapped_column(String(8))
    sender: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(10), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))
    payload: Mapped[str] = mapped_column(Text)
    source_event_id: Mapped[str] = mapped_column(SwitchId)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deadline_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    claim_token: Mapped[str | None] = mapped_column(String(36))
    announced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    round: Mapped[int] = mapped_column(Integer, default=0)


class NotificationRedelivery(Base):
    """An operator's request to send a given-up notification again: who, when, why."""

    __tablename__ = "notification_redeliveries"
    __table_args__ = (UniqueConstraint("notification_id", "round"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    notification_id: Mapped[str] = mapped_column(ForeignKey("notifications.notification_id"))
    round: Mapped[int] = mapped_column(Integer)
    requested_by: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str | None] = mapped_column(Text)


class DeadLetterRedrive(Base):
    """A dead letter put back in the flow: once per dead letter (the unique key says so).

    REQUESTED is written before the message is produced, PUBLISHED after the broker
    acknowledged it, with where it landed; a REQUESTED redrive found again is
    re-published (its event id makes the copy harmless downstream).
    """

    __tablename__ = "dead_letter_redrives"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    dead_letter_id: Mapped[int] = mapped_column(ForeignKey("dead_letters.id"), unique=True)
    requested_by: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str | None] = mapped_column(Text)
    body_source: Mapped[str] = mapped_column(String(16))  # original | corrected
    target_topic: Mapped[str] = mapped_column(String(120))
    key: Mapped[bytes | None] = mapped_column(LargeBinary)
    value: Mapped[bytes] = mapped_column(LargeBinary)
    payment_id: Mapped[str | None] = mapped_column(SwitchId, index=True)
    event_id: Mapped[str | None] = mapped_column(SwitchId)
    status: Mapped[str] = mapped_column(String(10))  # REQUESTED | PUBLISHED
    published_partition: Mapped[int | None] = mapped_column(Integer)
    published_offset: Mapped[int | None] = mapped_column(BigInteger)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class NotificationAttempt(Base):
    __tablename__ = "notification_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    notification_id: Mapped[str] = mapped_column(
        ForeignKey("notifications.notification_id"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    duration_ms: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(500))


class ApprovedSchema(Base):
    """A writer schema the switch approved: only these are ever used to decode a message.

    First writer wins: the fingerprint (the 8 bytes on the wire) and the identity
    (SHA-256 of the normalised schema JSON, docs left out) are each unique, and a row is never
    updated or deleted (database triggers refuse both). Banks cannot write here.
    """

    __tablename__ = "approved_schemas"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary(8), unique=True)
    identity: Mapped[str] = mapped_column(String(64), unique=True)
    event_type: Mapped[str] = mapped_column(String(64))
    schema_text: Mapped[str] = mapped_column(Text)
    origin: Mapped[str] = mapped_column(String(10))  # release | operator
    approved_by: Mapped[str] = mapped_column(String(64))
    approved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (CheckConstraint("origin IN ('release', 'operator')", name="origin"),)


class OperatorAction(Base):
    """One operator action, as the audit log keeps it (append-only, hash-chained).

    ``row_hash`` covers the row's own content and ``prev_hash``, the hash of the row
    before it (``seq`` - 1), so altering, deleting or inserting a row breaks the chain
    from there on (``engine.ops.audit_log``). Database triggers refuse UPDATE and DELETE.
    """

    __tablename__ = "operator_actions"
    __table_args__ = (CheckConstraint("seq >= 1", name="seq"),)

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    acted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(40))
    target: Mapped[str] = mapped_column(String(200))
    old_value: Mapped[str | None] = mapped_column(Text)  # JSON
    new_value: Mapped[str | None] = mapped_column(Text)  # JSON
    reason: Mapped[str | None] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    row_hash: Mapped[str] = mapped_column(String(64))


class OperatorProposal(Base):
    """An operator action one operator proposed and another must approve (four eyes).

    ``request`` is the action's request as JSON (``engine.ops.registry``); ``preview_old``
    and ``preview_new`` what it would change when proposed. Only a PENDING row changes,
    and only to APPROVED, REFUSED, EXPIRED or FAILED; a decided row never changes again,
    nor is any row deleted (database triggers refuse both; ``engine.ops.proposals``).
    """

    __tablename__ = "operator_proposals"
    __table_args__ = (
        CheckConstraint(
            "state IN ('PENDING', 'APPROVED', 'REFUSED', 'EXPIRED', 'FAILED')", name="state"
        ),
        CheckConstraint("expires_at > proposed_at", name="expiry"),
        CheckConstraint("state <> 'APPROVED' OR decided_by <> proposed_by", name="four_eyes"),
        Index("ix_operator_proposals_state", "state", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    action: Mapped[str] = mapped_column(String(40))
    target: Mapped[str] = mapped_column(String(200))
    request: Mapped[str] = mapped_column(Text)  # JSON, engine.ops.registry
    request_sha256: Mapped[str] = mapped_column(String(64))
    preview_old: Mapped[str | None] = mapped_column(Text)  # JSON
    preview_new: Mapped[str | None] = mapped_column(Text)  # JSON
    state: Mapped[str] = mapped_column(String(16))
    proposed_by: Mapped[str] = mapped_column(String(64))
    proposed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str | None] = mapped_column(Text)
    proposal_seq: Mapped[int] = mapped_column(BigId)  # its record in operator_actions
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decision_reason: Mapped[str | None] = mapped_column(Text)
    decision_seq: Mapped[int | None] = mapped_column(BigId)  # the decision's record
    action_seq: Mapped[int | None] = mapped_column(BigId)  # the action's record, approved


class ReferenceVersion(Base):
    """One change of reference data (a fee rule, a channel limit, a bank's delivery settings).

    Numbered in the order announced; a decision about an event uses, for each item, the
    newest version whose ``effective_from`` is at or before the event's time
    (``engine.ledger.reference_versions``), so a replay reproduces it. Append-only.
    """

    __tablename__ = "reference_versions"
    __table_args__ = (
        CheckConstraint("version >= 1", name="version"),
        CheckConstraint("effective_from >= announced_at", name="notice"),
    )

    version: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(16))  # fee | limit | bank | cap
    item: Mapped[str] = mapped_column(String(64))  # e.g. WEB/PURCHASE/MAD, 007/MAD
    old_value: Mapped[str | None] = mapped_column(Text)  # JSON; null: there was none
    new_value: Mapped[str | None] = mapped_column(Text)  # JSON; null: removed
    announced_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    effective_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    action_seq: Mapped[int] = mapped_column(BigId)  # the operator action that announced it


class ConsoleUser(Base):
    """A person who signs in to the console: an operator, an auditor, or one bank's user.

    Only an argon2 hash of the password is kept. A bank user names exactly one bank; the
    others none. A disabled user cannot sign in, and its sessions and tokens stop working.
    """

    __tablename__ = "console_users"
    __table_args__ = (
        CheckConstraint("role IN ('operator', 'auditor', 'bank')", name="role"),
        CheckConstraint("(role = 'bank') = (bank_code IS NOT NULL)", name="bank_for_bank_role"),
    )

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    bank_code: Mapped[str | None] = mapped_column(String(8))
    password_hash: Mapped[str] = mapped_column(String(200))
    disabled: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(64))
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ConsoleSession(Base):
    """A browser session: the SHA-256 of its random id (the cookie's value is never kept),
    its CSRF token, and when it ends."""

    __tablename__ = "console_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_name: Mapped[str] = mapped_column(ForeignKey("console_users.name"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class ApiToken(Base):
    """A machine's bearer token: its public id and the SHA-256 of its secret part."""

    __tablename__ = "api_tokens"

    token_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    user_name: Mapped[str] = mapped_column(ForeignKey("console_users.name"), index=True)
    label: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuditRun(Base):
    """One run of ``audit verify``, ``replay`` or ``reconcile``, recorded as it ended.

    ``options`` says what the run covered (ledgers, range, anchors) as JSON; ``counts``
    its figures; ``report`` its findings as JSON, cut to ``engine.audit.runs``'s bound
    (``report_cut``; ``report_chars`` is the whole report's length). Append-only: database
    triggers refuse UPDATE and DELETE.
    """

    __tablename__ = "audit_runs"
    __table_args__ = (
        CheckConstraint("kind IN ('verify', 'replay', 'reconcile')", name="kind"),
        CheckConstraint("outcome IN ('OK', 'DIFFERENCES', 'FAILED')", name="outcome"),
        CheckConstraint("via IN ('cli', 'console')", name="via"),
        CheckConstraint("finished_at >= started_at", name="times"),
        CheckConstraint("differences >= 0", name="differences"),
        Index("ix_audit_runs_kind", "kind", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(64))
    via: Mapped[str] = mapped_column(String(16))  # cli | console
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    options: Mapped[str] = mapped_column(Text)  # JSON
    outcome: Mapped[str] = mapped_column(String(16))
    differences: Mapped[int] = mapped_column(BigInteger)
    counts: Mapped[str] = mapped_column(Text)  # JSON: name -> integer
    report: Mapped[str | None] = mapped_column(Text)  # JSON, at most MAX_REPORT_CHARS
    report_chars: Mapped[int] = mapped_column(BigInteger)
    report_cut: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(Text)
