"""Each bank's interbank position row: read with a batch, moved by one guarded update.

``bank_positions`` holds, per bank and currency, ``posted_minor`` (the net of every
interbank posting ever posted: what the bank sent minus what it received),
``holds_minor`` (its payers' active interbank holds) and ``liquidity_minor`` (the balance
of its liquidity account, moved by ``FundsIn`` / ``FundsOut`` in the same transaction as
their postings). A bank's exposure, the amount its limits bound, is::

    exposure = posted_minor - settled + holds_minor

where ``settled`` is the sum of its nets over the settled windows (:func:`settled_nets`).

Exact with several settlement instances, without one row for every bank: a batch moves
each bank's row once, in a fixed order (bank code, then currency), so two instances never
deadlock and only wait for each other on a bank both batches move. A movement that adds
to a bounded bank's exposure (or withdraws its liquidity) is written with the limit
checked in the statement itself::

    UPDATE bank_positions SET posted_minor = posted_minor + :posted, ...
     WHERE bank_code = :bank AND currency = :currency
       AND posted_minor + holds_minor + :exposure <= :cap + :settled
       AND posted_minor + holds_minor + :exposure <= liquidity_minor + :liquidity + :settled

No row changed means another instance moved the bank since the batch's snapshot:
:class:`~engine.ledger.recorder.GuardFailed` is raised, the transaction rolls back and the
batch is planned again from a fresh snapshot, where the check refuses what no longer
fits. ``settled`` comes from the snapshot; it only ever grows, so a stale read is strict,
never lenient. Rows are written after the postings, so each is locked only until commit.

The statement returns the row as it leaves it: the exposure before and after, in write
order, which is what a threshold alert compares (:func:`engine.risk.limits.crossing`).

**The journal.** Every change of a position row writes one ``position_changes`` row in
the same transaction, right after the update (:func:`move_positions`: one per bank per
batch, one ``executemany``): the deltas, the exposure before and after as the statement
returned them, the cap and liquidity it checked (None: unbounded), the settled nets it
took off, the version the batch's snapshot read, the row's version once moved, and what
caused it (the batch's payment and movement ids, at most :data:`MAX_REFS`). Opening a row
(:func:`ensure_rows`), setting a cap (:func:`journal_limits`) and settling a window
(:func:`journal_settled`) also lock the bank's row with an update (its version + 1) and
journal the change. Why ``id`` order is the order a bank's row changed, with any number
of settlement instances: a transaction's update holds the bank's row lock until commit,
and its journal insert, after the update, takes its id before that commit; a second
transaction changing the same bank waits on the lock until the first commits, and only
then inserts, so it takes a greater id (PostgreSQL's sequence and SQLite's single writer
both hand out ids in the order they are asked for). Ids of different banks may interleave
in any way; the auditor only orders each bank's own rows
(``engine.audit.position_journal``), and the snapshot's version says exactly which of
them a batch had seen when it decided (the cap and the settled nets are read in the same
statement as the version, or before it).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Connection, func, insert, select, tuple_, update

from engine.domain.notifications import CAP_ALERT, NotificationStatus
from engine.events import EVENT_NAMESPACE, uuid5_text
from engine.ledger.models import (
    Account,
    BankLimit,
    BankPosition,
    PositionChange,
    WindowSettlement,
    table_of,
)
from engine.ledger.notification_writes import DueNotification
from engine.ledger.prepared import prepared, prepared_insert
from engine.risk.limits import Crossing, Exposure, Share, crossing
from engine.risk.position_walk import FUNDS_IN as FUNDS_IN
from engine.risk.position_walk import FUNDS_OUT as FUNDS_OUT
from engine.risk.position_walk import (  # the journal's causes and sources, re-exported
    LIMITS,
    OPENED,
    OPERATOR_SOURCE,
    PAYMENTS,
    SETTLED,
)
from engine.risk.position_walk import LOAD_SOURCE as LOAD_SOURCE

MAX_REFS = 1_000  # ids a journal row names (a batch is bounded; ref_count counts them all)


class AlertTo(NamedTuple):
    """How a crossing is told: the notification sender and how long it is tried."""

    sender: str
    horizon_s: int


class PositionMoved(NamedTuple):
    """One decision's change to one bank's position row (summed per bank by the writer).

    ``cap_minor`` None: the bank has no limits in the currency, nothing is checked.
    ``cap_minor``, ``settled_minor`` and ``alert_percent`` are the snapshot's, the same on
    every row of one bank in a batch.
    """

    bank_code: str
    currency: str
    posted_minor: int  # + the bank sent, - it received
    holds_minor: int  # + a hold placed, - released or captured
    liquidity_minor: int  # + funds in, - funds out
    cap_minor: int | None
    settled_minor: int
    alert_percent: int | None
    at: datetime
    alert_to: AlertTo | None = None  # None: a crossing is not told (tools, tests)
    cause: str = PAYMENTS  # what the journal says moved it
    ref: str | None = None  # the payment or movement id that moved it
    read_version: int | None = None  # the row's version in the batch's snapshot


class LiquidityRecorded(NamedTuple):
    """A ``FundsIn`` or ``FundsOut`` as decided (``liquidity_movements``)."""

    movement_id: str
    bank_code: str
    currency: str
    kind: str
    amount_minor: int
    outcome: str
    reason_code: str | None
    reason_message: str | None
    posting_id: str | None
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class Crossed:
    """A bank whose share used rose to its alert percentage in this batch's write."""

    bank_code: str
    currency: str
    exposure_minor: int
    cap_minor: int
    alert_percent: int
    version: int  # the row's version once moved: names the crossing
    at: datetime  # when the movement that crossed it happened (its event's time)


@dataclass(slots=True)
class BankRow:
    """A bank's position row, limits and settled nets, as a batch read them."""

    bank: str
    currency: str
    posted_minor: int
    holds_minor: int
    liquidity_minor: int
    cap_minor: int | None
    alert_percent: int | None
    settled_minor: int
    version: int = 0

    @property
    def exposure(self) -> Exposure:
        return Exposure(
            self.bank, self.currency, self.posted_minor - self.settled_minor, self.holds_minor
        )


def read_banks(conn: Connection, keys: Iterable[tuple[str, str]] | None = None) -> dict[
    tuple[str, str], BankRow
]:  # fmt: skip
    """The position rows (with limits and settled nets) of ``keys``, or of every bank."""
    bp, bl = table_of(BankPosition), table_of(BankLimit)
    query = select(
        bp.c.bank_code, bp.c.currency, bp.c.posted_minor, bp.c.holds_minor,
        bp.c.liquidity_minor, bl.c.net_debit_cap_minor, bl.c.alert_percent, bp.c.version,
    ).select_from(bp.outerjoin(
        bl, (bl.c.bank_code == bp.c.bank_code) & (bl.c.currency == bp.c.currency)
    ))  # fmt: skip
    if keys is not None:
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        query = query.where(tuple_(bp.c.bank_code, bp.c.currency).in_(wanted))
    settled = settled_nets(conn)
    return {
        (r.bank_code, r.currency): BankRow(
            r.bank_code, r.currency, int(r.posted_minor), int(r.holds_minor),
            int(r.liquidity_minor), r.net_debit_cap_minor, r.alert_percent,
            settled.get((r.bank_code, r.currency), 0), int(r.version),
        )
        for r in conn.execute(query)
    }  # fmt: skip


def exposures(conn: Connection) -> dict[tuple[str, str], Exposure]:
    """Every bank's exposure per currency: its posted position net of settled windows, and
    its holds (``sakk settlement positions``, the auditor)."""
    return {key: row.exposure for key, row in read_banks(conn).items()}


def settled_nets(conn: Connection) -> dict[tuple[str, str], int]:
    """Each (bank, currency)'s nets summed over every SETTLED window, position sign.

    ``window_settlements`` rows never change once a window is SETTLED: a bank's exposure
    is its posted position less this, and settling gives back exactly that window's nets.
    """
    t = table_of(WindowSettlement)
    rows = conn.execute(
        select(t.c.bank_code, t.c.currency, func.sum(t.c.net_minor)).group_by(
            t.c.bank_code, t.c.currency
        )
    )
    return {(bank, currency): int(total) for bank, currency, total in rows}


def ensure_rows(
    conn: Connection, keys: Iterable[tuple[str, str]],
    liquidity: Mapping[tuple[str, str], int] | None = None,
) -> int:  # fmt: skip
    """Create the position rows missing for ``keys``, at zero but for the liquidity the
    banks' liquidity accounts hold; how many were created. Each is journaled ``OPENED``."""
    bp = table_of(BankPosition)
    rows = conn.execute(select(bp.c.bank_code, bp.c.currency))
    existing = {(r.bank_code, r.currency) for r in rows}
    missing = sorted(set(keys) - existing)
    held = liquidity or {}
    now = datetime.now(UTC)
    journal: list[dict[str, Any]] = []
    if missing:
        created = [_zero_row(bank, cur) | {"liquidity_minor": held.get((bank, cur), 0)}
                   for bank, cur in missing]  # fmt: skip
        conn.execute(insert(bp), created)
        journal += [
            _change(r["bank_code"], r["currency"], OPENED, ["reference data"], now, version=0,
                    liquidity=r["liquidity_minor"], liquidity_after=r["liquidity_minor"])
            for r in created
        ]  # fmt: skip
    # A row that predates its bank's liquidity account (a ledger upgraded to positions)
    # takes the first deposit the account was just created with.
    for (bank, cur), amount in sorted(held.items()):
        if (bank, cur) in existing and amount:
            moved = conn.execute(
                update(bp)
                .where(bp.c.bank_code == bank, bp.c.currency == cur, bp.c.liquidity_minor == 0)
                .values(liquidity_minor=amount, version=bp.c.version + 1)
                .returning(*_RETURNED)
            ).first()
            if moved is not None:
                journal.append(_locked_change(bank, cur, OPENED, ["reference data"], now, moved,
                                              liquidity=amount))  # fmt: skip
    _journal(conn, journal)
    return len(missing)


def _zero_row(bank: str, currency: str) -> dict[str, Any]:
    return {
        "bank_code": bank, "currency": currency, "posted_minor": 0, "holds_minor": 0,
        "liquidity_minor": 0, "version": 0, "updated_at": None,
    }  # fmt: skip


def liquidity_balances(conn: Connection) -> dict[tuple[str, str], int]:
    """Each bank's liquidity account balance per currency (posted in place: the row is it)."""
    a = table_of(Account)
    rows = conn.execute(
        select(a.c.bank_code, a.c.currency, a.c.balance_minor).where(a.c.kind == "LIQUIDITY")
    )
    return {(bank, cur): int(balance) for bank, cur, balance in rows}


@dataclass(slots=True)
class _Net:
    posted: int = 0
    holds: int = 0
    liquidity: int = 0
    last: PositionMoved | None = None
    causes: set[str] = field(default_factory=set)
    refs: list[str] = field(default_factory=list)


class GuardRefused(Exception):
    """A bank's row no longer fits the movement: the batch must be planned again."""


def move_positions(conn: Connection, rows: Sequence[PositionMoved]) -> list[Crossed]:
    """Apply a batch's position changes: one update per bank, in (bank, currency) order,
    and one journal row per bank moved (one ``executemany`` after the updates).

    Raises :class:`GuardRefused` when a guarded update finds the bank beyond a limit.
    Returns the banks whose share used rose to their alert percentage.
    """
    nets: dict[tuple[str, str], _Net] = defaultdict(_Net)
    for row in rows:
        net = nets[(row.bank_code, row.currency)]
        net.posted += row.posted_minor
        net.holds += row.holds_minor
        net.liquidity += row.liquidity_minor
        net.last = row
        net.causes.add(row.cause)
        if row.ref is not None:
            net.refs.append(row.ref)
    crossed: list[Crossed] = []
    journal: list[dict[str, Any]] = []
    for key in sorted(nets):
        net = nets[key]
        if net.last is None or (net.posted, net.holds, net.liquidity) == (0, 0, 0):
            continue
        found, change = _move_one(conn, net, net.last)
        journal.append(change)
        if found is not None:
            crossed.append(found)
    _journal(conn, journal)
    return crossed


_RETURNED = (
    table_of(BankPosition).c.posted_minor, table_of(BankPosition).c.holds_minor,
    table_of(BankPosition).c.liquidity_minor, table_of(BankPosition).c.version,
)  # fmt: skip


def _move_one(
    conn: Connection, net: _Net, row: PositionMoved
) -> tuple[Crossed | None, dict[str, Any]]:
    bp = table_of(BankPosition)
    exposure = bp.c.posted_minor + bp.c.holds_minor + (net.posted + net.holds)
    statement = (
        update(bp)
        .where(bp.c.bank_code == row.bank_code, bp.c.currency == row.currency)
        .values(
            posted_minor=bp.c.posted_minor + net.posted, holds_minor=bp.c.holds_minor + net.holds,
            liquidity_minor=bp.c.liquidity_minor + net.liquidity, version=bp.c.version + 1,
            updated_at=row.at,
        )
        .returning(*_RETURNED)
    )  # fmt: skip
    adds = net.posted + net.holds > 0
    cap = row.cap_minor if row.cap_minor is not None and adds else None
    if cap is not None:
        statement = statement.where(exposure <= cap + row.settled_minor)
    liquidity_checked = row.cap_minor is not None and (adds or net.liquidity < 0)
    if liquidity_checked:
        statement = statement.where(
            exposure <= bp.c.liquidity_minor + net.liquidity + row.settled_minor
        )
    moved = conn.execute(statement).first()
    if moved is None:
        if conn.execute(select(bp.c.version).where(
            bp.c.bank_code == row.bank_code, bp.c.currency == row.currency
        )).first() is not None:  # fmt: skip
            raise GuardRefused(f"bank {row.bank_code} {row.currency}: beyond its limits now")
        fresh = _zero_row(row.bank_code, row.currency) | {
            "posted_minor": net.posted, "holds_minor": net.holds,
            "liquidity_minor": net.liquidity, "version": 1, "updated_at": row.at,
        }  # fmt: skip
        conn.execute(insert(bp), [fresh])  # a race with another insert: IntegrityError, retried
        return None, _batch_change(row, net, fresh["posted_minor"] + fresh["holds_minor"],
                                   net.liquidity, 1, None, None)  # fmt: skip
    after = int(moved.posted_minor) + int(moved.holds_minor)
    checked_liquidity = int(moved.liquidity_minor) if liquidity_checked else None
    change = _batch_change(row, net, after, int(moved.liquidity_minor), int(moved.version), cap,
                           checked_liquidity)  # fmt: skip
    return _crossing(row, net, after, int(moved.version)), change


def _batch_change(
    row: PositionMoved, net: _Net, after: int, liquidity_after: int, version: int,
    cap: int | None, liquidity_checked: int | None,
) -> dict[str, Any]:  # fmt: skip
    """A batch's journal row for one bank: what moved it, and what its guard checked."""
    return _change(
        row.bank_code, row.currency, "+".join(sorted(net.causes)), net.refs, row.at,
        version=version, posted=net.posted, holds=net.holds, liquidity=net.liquidity,
        before=after - net.posted - net.holds, after=after, liquidity_after=liquidity_after,
        cap=cap, liquidity_checked=liquidity_checked, settled=row.settled_minor,
        read_version=row.read_version,
    )  # fmt: skip


def _change(
    bank: str, currency: str, cause: str, refs: Sequence[str], at: datetime | None, *,
    version: int, posted: int = 0, holds: int = 0, liquidity: int = 0, settled_delta: int = 0,
    before: int = 0, after: int = 0, liquidity_after: int = 0, cap: int | None = None,
    liquidity_checked: int | None = None, settled: int = 0, read_version: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    return {
        "bank_code": bank, "currency": currency, "cause": cause,
        "refs": json.dumps(list(refs[:MAX_REFS])), "ref_count": len(refs),
        "posted_delta_minor": posted, "holds_delta_minor": holds,
        "liquidity_delta_minor": liquidity, "settled_delta_minor": settled_delta,
        "exposure_before_minor": before, "exposure_after_minor": after,
        "liquidity_after_minor": liquidity_after, "cap_minor": cap,
        "liquidity_checked_minor": liquidity_checked, "settled_minor": settled,
        "read_version": read_version, "version": version, "occurred_at": at,
    }  # fmt: skip


def _locked_change(
    bank: str, currency: str, cause: str, refs: Sequence[str], at: datetime, moved: Any,
    liquidity: int = 0, **fields: Any,
) -> dict[str, Any]:  # fmt: skip
    """The journal row of a change outside a batch, from the row its update returned."""
    exposure = int(moved.posted_minor) + int(moved.holds_minor)
    return _change(
        bank, currency, cause, refs, at, version=int(moved.version), liquidity=liquidity,
        before=exposure, after=exposure, liquidity_after=int(moved.liquidity_minor), **fields,
    )  # fmt: skip


JOURNAL_COLUMNS = (
    "bank_code", "currency", "cause", "refs", "ref_count", "posted_delta_minor",
    "holds_delta_minor", "liquidity_delta_minor", "settled_delta_minor",
    "exposure_before_minor", "exposure_after_minor", "liquidity_after_minor", "cap_minor",
    "liquidity_checked_minor", "settled_minor", "read_version", "version", "occurred_at",
)  # fmt: skip


def _journal(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """One insert of every row (PostgreSQL: one ``COPY``), compiled once per process."""
    if rows:
        statement = prepared(conn, PositionChange.__name__, lambda d: prepared_insert(
            table_of(PositionChange), d, JOURNAL_COLUMNS
        ))  # fmt: skip
        statement.run(conn, [tuple(r[c] for c in JOURNAL_COLUMNS) for r in rows])


def _lock(conn: Connection, bank: str, currency: str) -> Any:
    """Lock ``bank``'s row until commit (its version + 1), so its journal row is in order."""
    bp = table_of(BankPosition)
    return conn.execute(
        update(bp)
        .where(bp.c.bank_code == bank, bp.c.currency == currency)
        .values(version=bp.c.version + 1)
        .returning(*_RETURNED)
    ).one()


def operator_source(seq: int) -> str:
    return f"{OPERATOR_SOURCE}{seq}"


def journal_limits(
    conn: Connection, bank: str, currency: str, cap_minor: int | None, source: str
) -> None:
    """Journal ``bank``'s new cap (None: unbounded) in write order, in the caller's
    transaction; ``source`` names what set it (``operator_action:SEQ``, a load)."""
    ensure_rows(conn, [(bank, currency)])
    moved = _lock(conn, bank, currency)
    settled = settled_nets(conn).get((bank, currency), 0)
    _journal(conn, [_locked_change(bank, currency, LIMITS, [source], datetime.now(UTC), moved,
                                   cap=cap_minor, settled=settled)])  # fmt: skip


def journal_settled(
    conn: Connection, label: str, nets: Mapping[tuple[str, str], int], at: datetime
) -> None:
    """Journal what settling window ``label`` gave back to each bank, in write order, in
    the settling transaction (after its ``window_settlements`` rows)."""
    keys = sorted(key for key, net in nets.items() if net)
    if not keys:
        return
    ensure_rows(conn, keys)
    settled = settled_nets(conn)
    _journal(conn, [
        _locked_change(bank, cur, SETTLED, [label], at, _lock(conn, bank, cur),
                       settled_delta=nets[(bank, cur)], settled=settled.get((bank, cur), 0))
        for bank, cur in keys
    ])  # fmt: skip


def _crossing(row: PositionMoved, net: _Net, after: int, version: int) -> Crossed | None:
    if row.cap_minor is None or row.alert_percent is None:
        return None
    before = after - net.posted - net.holds
    previous = Share(before - row.settled_minor, row.cap_minor)
    new = Share(after - row.settled_minor, row.cap_minor)
    if crossing(previous, new, row.alert_percent) is Crossing.REACHED:
        return Crossed(
            row.bank_code, row.currency, after - row.settled_minor, row.cap_minor,
            row.alert_percent, version, row.at,
        )  # fmt: skip
    return None


def alert_notification(crossed: Crossed, to: AlertTo, now: datetime) -> DueNotification:
    """The bank's own notification of a crossing: one per crossing (its id names the row's
    version once moved), delivered and signed as every notification."""
    subject = f"cap:{crossed.bank_code}:{crossed.currency}:{crossed.version}"
    share = Share(crossed.exposure_minor, crossed.cap_minor)
    payload = {
        # what every notification carries: the bank (as payer) and its settlement account
        "payer_bank": crossed.bank_code, "bank_reference": CAP_ALERT,
        "payer_account": f"{crossed.bank_code}-SETTLEMENT-{crossed.currency}",
        "occurred_at": crossed.at.isoformat(),
        "bank_code": crossed.bank_code, "currency": crossed.currency,
        "exposure_minor": crossed.exposure_minor, "net_debit_cap_minor": crossed.cap_minor,
        "alert_percent": crossed.alert_percent, "share_used_bps": share.basis_points,
    }  # fmt: skip
    return DueNotification(
        uuid5_text(EVENT_NAMESPACE, f"{subject}/{CAP_ALERT}"), subject, CAP_ALERT,
        crossed.bank_code, to.sender, NotificationStatus.PENDING, 0,
        json.dumps(payload, sort_keys=True), subject, now, now,
        now + timedelta(seconds=to.horizon_s), 0,
    )  # fmt: skip
