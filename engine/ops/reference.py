"""Change reference data while the switch runs: a fee rule, a channel limit, a bank's delivery.

Each change is an action (:mod:`engine.ops.action`) that writes three things in one
transaction: the table's current row (``fee_rules``, ``channel_limits``, ``banks``: what
a restarted stage and the read side see), a numbered row of ``reference_versions`` with
the time it takes effect, and its audit record. Stages pick the version up without a
restart and apply it to events from ``effective_from`` on, which a replay reproduces
(:mod:`engine.ledger.reference_versions`).

Fees and limits take effect at least ``notice_s`` after they are announced (the
settings say how long, and why); an operator may name a later time. Per item, a change
may not take effect before one still pending. A bank's webhook URL and format are not
part of any decision a replay repeats: they take effect at once, at the next delivery.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy import Connection, Table, delete, insert, select, update

from engine.ledger.exceptions import ReferenceDataError
from engine.ledger.models import Bank, ChannelLimit, FeeRule, table_of
from engine.ledger.models import ReferenceVersion as VersionRow
from engine.ledger.reference import (
    NOTIFICATION_FORMATS,
    check_channel_limit,
    check_fee_rule,
)
from engine.ledger.reference_versions import (
    BANK,
    FEE,
    LIMIT,
    fee_item,
    limit_item,
    newest_version,
)
from engine.ops.action import ActionRefusedError, Plan, Refused
from engine.ops.audit_log import canonical_json
from engine.times import as_utc

FEE_FIELDS = ("fixed_minor", "rate_bps", "max_minor")
LIMIT_FIELDS = ("max_amount_minor", "hold_expiry_s")
BANK_FIELDS = ("webhook_url", "notification_format")
MAX_WEBHOOK_URL_CHARS = 500  # banks.webhook_url is String(500)


@dataclass(frozen=True)
class ItemState:
    """What a change is decided on: the item's current value and its latest version."""

    current: dict[str, Any] | None
    last_effective: datetime | None  # the item's latest version's effective_from
    newest_version: int


@dataclass(frozen=True)
class VersionChange:
    """The rows a reference change writes, as ``decide`` planned them."""

    kind: str
    item: str
    old: dict[str, Any] | None
    new: dict[str, Any] | None
    version: int
    announced_at: datetime
    effective_from: datetime


def decide_change(
    kind: str,
    item: str,
    new: dict[str, Any] | None,
    state: ItemState,
    at: datetime,
    effective_from: datetime,
) -> Plan | Refused:
    """Pure: the change to write, or why not (nothing changes, or it jumps a pending one)."""
    if new == state.current:
        return Refused(f"{kind} {item} is already {_shown(new)}: nothing changes")
    if state.current is None and new is None:
        return Refused(f"{kind} {item} does not exist")
    if state.last_effective is not None and effective_from < state.last_effective:
        return Refused(
            f"a change of {kind} {item} already takes effect at "
            f"{state.last_effective.isoformat()}: announce this one from then on"
        )
    change = VersionChange(
        kind, item, state.current, new, state.newest_version + 1, at, effective_from
    )
    target = f"{kind} {item}"
    when = effective_from.isoformat()
    return Plan(target, state.current, {"value": new, "effective_from": when}, change)


def load_item(conn: Connection, kind: str, item: str, current: dict[str, Any] | None) -> ItemState:
    v = table_of(VersionRow)
    last = conn.execute(
        select(v.c.effective_from)
        .where(v.c.kind == kind, v.c.item == item)
        .order_by(v.c.version.desc())
        .limit(1)
    ).scalar()
    return ItemState(current, None if last is None else as_utc(last), newest_version(conn))


def write_version(conn: Connection, change: VersionChange, seq: int) -> None:
    conn.execute(
        insert(table_of(VersionRow)).values(
            version=change.version,
            kind=change.kind,
            item=change.item,
            old_value=canonical_json(change.old),
            new_value=canonical_json(change.new),
            announced_at=change.announced_at,
            effective_from=change.effective_from,
            action_seq=seq,
        )  # fmt: skip
    )


def effective_time(at: datetime, notice_s: int, requested: datetime | None) -> Refused | datetime:
    """When a fee or limit change announced ``at`` takes effect: the notice, or later if asked."""
    earliest = at + timedelta(seconds=notice_s)
    if requested is None:
        return earliest
    if requested < earliest:
        return Refused(
            f"a change takes effect at least {notice_s} s after it is announced: "
            f"{requested.isoformat()} is before {earliest.isoformat()}"
        )
    return requested


def check_committed_in_time(at: datetime, within_s: float) -> None:
    """Refuse (roll back) an announcement whose transaction took longer than stages allow."""
    late_s = time.time() - at.timestamp()
    if late_s > within_s:
        raise ActionRefusedError(
            "reference", f"the change took {late_s:.1f} s to record (at most {within_s} s): retry"
        )


def _replace_item(
    conn: Connection, table: Table, key: dict[str, str], change: VersionChange, seq: int,
    commit_within_s: float,
) -> VersionChange:  # fmt: skip
    """A fee or limit row as the change leaves it (gone if ``new`` is None), and its version."""
    conn.execute(delete(table).where(*(table.c[k] == v for k, v in key.items())))
    if change.new is not None:
        conn.execute(insert(table).values(**key, **change.new))
    write_version(conn, change, seq)
    check_committed_in_time(change.announced_at, commit_within_s)
    return change


@dataclass(frozen=True)
class SetFee:
    """Set (or, with ``rule`` None, remove) the fee rule of a (channel, payment type, currency)."""

    name: ClassVar[str] = "reference.fee"
    channel: str
    payment_type: str
    currency: str
    rule: dict[str, Any] | None  # fixed_minor, rate_bps, max_minor
    notice_s: int
    commit_within_s: float
    effective_from: datetime | None = None

    def __post_init__(self) -> None:
        if self.rule is not None:
            entry = {"channel": self.channel, "payment_type": self.payment_type,
                     "currency": self.currency, **self.rule}  # fmt: skip
            checked = check_fee_rule(entry)
            object.__setattr__(self, "rule", {k: checked[k] for k in FEE_FIELDS})

    @property
    def item(self) -> str:
        return fee_item(self.channel, self.payment_type, self.currency)

    def load(self, conn: Connection) -> ItemState:
        t = table_of(FeeRule)
        row = conn.execute(
            select(*(t.c[f] for f in FEE_FIELDS)).where(
                t.c.channel == self.channel,
                t.c.payment_type == self.payment_type,
                t.c.currency == self.currency,
            )  # fmt: skip
        ).first()
        return load_item(conn, FEE, self.item, None if row is None else dict(row._mapping))

    def decide(self, state: ItemState, at: datetime) -> Plan | Refused:
        effective = effective_time(at, self.notice_s, self.effective_from)
        if isinstance(effective, Refused):
            return effective
        return decide_change(FEE, self.item, self.rule, state, at, effective)

    def apply(self, conn: Connection, plan: Plan, seq: int) -> VersionChange:
        key = {"channel": self.channel, "payment_type": self.payment_type,
               "currency": self.currency}  # fmt: skip
        return _replace_item(conn, table_of(FeeRule), key, plan.changes, seq, self.commit_within_s)


@dataclass(frozen=True)
class SetLimit:
    """Set (or, with ``limit`` None, remove) the limit of a (channel, currency)."""

    name: ClassVar[str] = "reference.limit"
    channel: str
    currency: str
    limit: dict[str, Any] | None  # max_amount_minor, hold_expiry_s
    notice_s: int
    commit_within_s: float
    effective_from: datetime | None = None

    def __post_init__(self) -> None:
        if self.limit is not None:
            entry = {"channel": self.channel, "currency": self.currency, **self.limit}
            checked = check_channel_limit(entry)
            object.__setattr__(self, "limit", {k: checked[k] for k in LIMIT_FIELDS})

    @property
    def item(self) -> str:
        return limit_item(self.channel, self.currency)

    def load(self, conn: Connection) -> ItemState:
        t = table_of(ChannelLimit)
        row = conn.execute(
            select(*(t.c[f] for f in LIMIT_FIELDS)).where(
                t.c.channel == self.channel, t.c.currency == self.currency
            )
        ).first()
        return load_item(conn, LIMIT, self.item, None if row is None else dict(row._mapping))

    def decide(self, state: ItemState, at: datetime) -> Plan | Refused:
        effective = effective_time(at, self.notice_s, self.effective_from)
        if isinstance(effective, Refused):
            return effective
        return decide_change(LIMIT, self.item, self.limit, state, at, effective)

    def apply(self, conn: Connection, plan: Plan, seq: int) -> VersionChange:
        key = {"channel": self.channel, "currency": self.currency}
        limits = table_of(ChannelLimit)
        return _replace_item(conn, limits, key, plan.changes, seq, self.commit_within_s)


@dataclass(frozen=True)
class SetBankDelivery:
    """Set a bank's webhook URL (None: none) and notification format (None: json).

    ``values`` names the fields that change (``webhook_url``, ``notification_format``);
    the others keep their value.
    """

    name: ClassVar[str] = "reference.bank"
    bank: str
    values: dict[str, str | None]

    def __post_init__(self) -> None:
        unknown = set(self.values) - set(BANK_FIELDS)
        if unknown or not self.values:
            raise ReferenceDataError(f"a bank's delivery change names some of {list(BANK_FIELDS)}")
        fmt = self.values.get("notification_format")
        if fmt not in (None, *NOTIFICATION_FORMATS):
            raise ReferenceDataError(
                f"notification format {fmt!r}: expected one of {list(NOTIFICATION_FORMATS)}"
            )
        url = self.values.get("webhook_url")
        if url is not None and not (url.startswith("https://") or url.startswith("http://")):
            raise ReferenceDataError("a webhook URL starts with https:// (or http://)")
        if url is not None and len(url) > MAX_WEBHOOK_URL_CHARS:
            raise ReferenceDataError(f"a webhook URL is at most {MAX_WEBHOOK_URL_CHARS} characters")

    def load(self, conn: Connection) -> ItemState:
        t = table_of(Bank)
        row = conn.execute(
            select(*(t.c[f] for f in BANK_FIELDS)).where(t.c.code == self.bank)
        ).first()
        current = None if row is None else dict(row._mapping)
        return load_item(conn, BANK, self.bank, current)

    def decide(self, state: ItemState, at: datetime) -> Plan | Refused:
        if state.current is None:
            return Refused(f"bank {self.bank} is unknown")
        new = {**state.current, **self.values}
        return decide_change(BANK, self.bank, new, state, at, at)

    def apply(self, conn: Connection, plan: Plan, seq: int) -> VersionChange:
        change: VersionChange = plan.changes
        t = table_of(Bank)
        conn.execute(update(t).where(t.c.code == self.bank).values(**(change.new or {})))
        write_version(conn, change, seq)
        return change


def _shown(value: dict[str, Any] | None) -> str:
    return "absent" if value is None else ", ".join(f"{k}={v}" for k, v in value.items())
