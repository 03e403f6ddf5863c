"""The one net-position rule: each bank's position per *effective* settlement window.

Every net position the switch reports (``sakk settlement report``, the close of a
window, ``sakk demo``'s summary, the camt.052/053 reports, ``sakk audit verify``)
is computed here, by this rule:

- Positions come from the settlement accounts' entries of interbank postings
  (:data:`SETTLED_KINDS`: payments, captures, refunds, returns; an OPENING posting
  is a bank's own funding, never a position). The payer bank's settlement account
  is credited (+amount) when its customer pays out, the payee bank's debited, so
  every posting adds zero across banks and every window's positions sum to zero
  per currency. Net = gross credits - gross debits: positive, the switch owes the bank.
- A posting belongs to the window of its own ``occurred_at`` (its *business*
  window), unless that window was closed before the posting was written: then it
  counts in the first window after it that was still open when it was written
  (:func:`effective_window`). A close records every chain's head; an entry at or
  below its chain's recorded head was written before the close.
- Over all windows the positions are the sum of every interbank posting: a carried
  posting moves between windows, never in or out of the total.

A payment keeps its business-day ``settlement_window`` column; only the position it
feeds moves. (The ``sakk_bank_net_position_minor`` gauge is not this rule: it is
what one settlement process posted since it started.)

A window is ``window_hours`` long (24 by default), aligned on UTC midnight (for 24
hours its label is the ``settlement_window`` settlement writes on the payment, e.g.
``2026-11-26``). Closing a window (``engine.audit.windows.close_window``) locks the
head of every chain (in ascending chain order, as appends do), so it is ordered with
every posting append, and records the positions this rule gives at that moment:
what it records is what every later report finds. Nothing of a closed window can
change afterwards unless the ledger itself is altered, which ``sakk audit verify``
detects (it recomputes every closed window). Refunds and returns run the other way
from payments (the payee bank's settlement account is credited), so a refund moves
both banks' positions back in the window of the refund.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, or_, select

from engine.ledger.models import (
    Account,
    AccountKind,
    Bank,
    LedgerEntry,
    Posting,
    SettlementWindow,
    SettlementWindowChainHead,
    SettlementWindowPosition,
)
from engine.ledger.postings import GENESIS_HEAD, PAYMENT_POSTING_KINDS, ChainHead
from engine.read.exceptions import WindowError
from engine.times import as_utc, parse_instant

DEFAULT_WINDOW_HOURS = 24
SUPPORTED_WINDOW_HOURS = (1, 2, 3, 4, 6, 8, 12, 24)  # divisors of a day: windows align on midnight
MAX_WINDOWS_LISTED = 20_000
# Postings that move money between banks: payments, captures of holds, refunds and
# returns (OPENING postings are each bank's own funding, never a position).
SETTLED_KINDS = PAYMENT_POSTING_KINDS


@dataclass(frozen=True, order=True)
class Window:
    start: datetime  # aware UTC, aligned on a multiple of ``hours`` from midnight
    hours: int = DEFAULT_WINDOW_HOURS

    def __post_init__(self) -> None:
        if self.hours not in SUPPORTED_WINDOW_HOURS:
            raise WindowError(
                f"window length {self.hours}h: expected one of {SUPPORTED_WINDOW_HOURS}"
            )

    @property
    def end(self) -> datetime:
        return self.start + timedelta(hours=self.hours)

    @property
    def label(self) -> str:
        if self.hours == 24:
            return self.start.date().isoformat()
        return f"{self.start:%Y-%m-%dT%H:%M}Z/{self.hours}h"

    def next(self) -> Window:
        return Window(self.end, self.hours)

    def contains(self, moment: datetime) -> bool:
        return self.start <= as_utc(moment) < self.end

    @classmethod
    def containing(cls, moment: datetime, hours: int = DEFAULT_WINDOW_HOURS) -> Window:
        moment = as_utc(moment)
        day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        return cls(day + timedelta(hours=(moment.hour // hours) * hours), hours)

    @classmethod
    def parse(cls, text: str, hours: int = DEFAULT_WINDOW_HOURS) -> Window:
        """``2026-11-26`` (a day) or ``2026-11-26T06:00`` (a window's start); also a label."""
        text = text.strip()
        if "/" in text:  # a label: 2026-11-26T06:00Z/6h
            text, _, length = text.partition("/")
            if length.rstrip("h") != str(hours):
                raise WindowError(f"window {text}/{length} given with --window-hours {hours}")
        start = parse_instant(text)
        window = cls.containing(start, hours)
        if window.start != start:
            raise WindowError(
                f"{text} is not the start of a {hours}h window; "
                f"the window containing it starts at {window.start.isoformat()}"
            )
        return window


@dataclass(frozen=True)
class Close:
    """A recorded close: a posting counts in the window if it is within its chain's head."""

    window: Window
    closed_at: datetime
    heads: Mapping[int, ChainHead]  # chain_id -> its head at the close: every chain it had
    postings: int
    event_id: str
    published_at: datetime | None = None
    # settlement_windows.chain_seq/chain_hash as stored: chain 0's head, for old readers.
    recorded_chain0: ChainHead | None = None

    @property
    def chain_seq(self) -> int:
        """Chain 0's head at the close (what a close recorded before chain keys)."""
        return self.heads.get(0, GENESIS_HEAD).seq

    @property
    def chain_hash(self) -> str:
        return self.heads.get(0, GENESIS_HEAD).head_hash

    def holds(self, chain_id: int, chain_seq: int) -> bool:
        """True if the entry at ``chain_seq`` of ``chain_id`` was written before the close."""
        head = self.heads.get(chain_id)
        return head is not None and chain_seq <= head.seq

    def heads_list(self) -> list[dict[str, Any]]:
        return [{"chain_id": c, "chain_seq": h.seq, "chain_hash": h.head_hash}
                for c, h in sorted(self.heads.items())]  # fmt: skip


def effective_window(
    business: Window, chain_id: int, chain_seq: int, closes: Mapping[str, Close]
) -> Window:
    """The window a posting's net position counts in (the first open one when it was written)."""
    window = business
    for _ in range(len(closes) + 1):
        close = closes.get(window.label)
        if close is None or close.holds(chain_id, chain_seq):
            return window
        window = window.next()
    raise WindowError(
        f"no open window after {business.label} for entry {chain_seq} of chain {chain_id}"
    )


@dataclass
class PositionLine:
    bank_code: str
    bank_name: str
    currency: str
    gross_debits_minor: int = 0  # the bank's customers paid out to other banks
    gross_credits_minor: int = 0  # other banks' customers paid in to this bank
    postings: int = 0
    carried_in_postings: int = 0  # late postings of earlier, closed windows counted here

    @property
    def net_minor(self) -> int:
        """Credits - debits: positive, the switch owes the bank."""
        return self.gross_credits_minor - self.gross_debits_minor

    def as_dict(self) -> dict[str, Any]:
        return {"bank_code": self.bank_code, "bank_name": self.bank_name, "currency": self.currency,
                "gross_debits_minor": self.gross_debits_minor,
                "gross_credits_minor": self.gross_credits_minor, "net_minor": self.net_minor,
                "postings": self.postings,
                "carried_in_postings": self.carried_in_postings}  # fmt: skip


@dataclass
class WindowReport:
    window: Window
    lines: list[PositionLine] = field(default_factory=list)
    close: Close | None = None
    recorded: list[dict[str, Any]] = field(default_factory=list)  # positions stored at the close
    carried_out_postings: int = 0  # postings of this window counted in a later one

    @property
    def closed(self) -> bool:
        return self.close is not None

    def net_by_currency(self) -> dict[str, int]:
        totals: dict[str, int] = defaultdict(int)
        for line in self.lines:
            totals[line.currency] += line.net_minor
        return dict(totals)

    def mismatches(self) -> list[str]:
        """For a closed window: where the ledger now disagrees with what the close recorded."""
        if self.close is None:
            return []
        now = {(x.bank_code, x.currency): (x.gross_debits_minor, x.gross_credits_minor)
               for x in self.lines}  # fmt: skip
        then = {(r["bank_code"], r["currency"]): (r["gross_debits_minor"], r["gross_credits_minor"])
                for r in self.recorded}  # fmt: skip
        problems = []
        for key in sorted(set(now) | set(then)):
            if now.get(key, (0, 0)) != then.get(key, (0, 0)):
                problems.append(
                    f"window {self.window.label} bank {key[0]} {key[1]}: recorded at "
                    f"close (debits, credits) {then.get(key, (0, 0))}, ledger now "
                    f"{now.get(key, (0, 0))}"
                )
        return problems

    def summary(self) -> dict[str, Any]:
        return {
            "window": self.window.label, "window_start": self.window.start,
            "window_end": self.window.end, "window_hours": self.window.hours,
            "status": "CLOSED" if self.close else "OPEN (provisional)",
            "closed_at": self.close.closed_at if self.close else None,
            "close_chain_seq": self.close.chain_seq if self.close else None,
            "close_chain_hash": self.close.chain_hash if self.close else None,
            "close_chain_heads": self.close.heads_list() if self.close else None,
            "net_by_currency": self.net_by_currency(),
            "carried_out_postings": self.carried_out_postings,
            "mismatches_with_close": self.mismatches(),
        }  # fmt: skip


def read_closes(conn: Connection, hours: int | None = None) -> dict[str, Close]:
    """Every recorded close by label; raises if they were made with another window length."""
    t = SettlementWindow.__table__
    heads = _recorded_heads(conn)
    closes = {}
    for r in conn.execute(select(t).order_by(t.c.window_start)):
        if hours is not None and r.window_hours != hours:
            raise WindowError(
                f"window {r.label} was closed as a {r.window_hours}h window; "
                f"report with --window-hours {r.window_hours}"
            )
        window = Window(as_utc(r.window_start), r.window_hours)
        closes[r.label] = Close(
            window,
            as_utc(r.closed_at),
            heads.get(r.label, {}),
            r.postings,
            r.event_id,
            as_utc(r.published_at) if r.published_at else None,
            ChainHead(int(r.chain_seq), str(r.chain_hash)),
        )
    return closes


def _recorded_heads(conn: Connection) -> dict[str, dict[int, ChainHead]]:
    h = SettlementWindowChainHead.__table__
    heads: dict[str, dict[int, ChainHead]] = defaultdict(dict)
    for r in conn.execute(select(h.c.label, h.c.chain_id, h.c.seq, h.c.head_hash)):
        heads[r.label][int(r.chain_id)] = ChainHead(int(r.seq), str(r.head_hash))
    return heads


def _recorded_positions(conn: Connection, label: str) -> list[dict[str, Any]]:
    t = SettlementWindowPosition.__table__
    rows = conn.execute(select(t).where(t.c.label == label).order_by(t.c.bank_code, t.c.currency))
    return [dict(r._mapping) for r in rows]


def _settlement_entries(
    conn: Connection,
    since: datetime | None,
    until: datetime | None,
    written_after: Mapping[int, int] | None = None,
) -> Iterable[Any]:
    """Settlement-account entries of money postings with their posting's time and chain place.

    Every kind in :data:`SETTLED_KINDS` counts, each in the window of its own
    ``occurred_at``: a capture or a refund days after the authorization moves the
    positions of the window it happened in, not the authorization's.

    ``written_after``: only entries above these seqs of their chains (any entry of a chain
    not named), i.e. those not yet written when a close recorded these heads.
    """
    e, a, p, b = LedgerEntry.__table__, Account.__table__, Posting.__table__, Bank.__table__
    query = (
        select(e.c.posting_id, e.c.amount_minor, e.c.currency, e.c.chain_id, e.c.chain_seq,
               p.c.occurred_at, a.c.bank_code, b.c.name)
        .join(p, p.c.posting_id == e.c.posting_id)
        .join(a, a.c.number == e.c.account_number)
        .join(b, b.c.code == a.c.bank_code)
        .where(a.c.kind == AccountKind.SETTLEMENT.value, p.c.kind.in_(SETTLED_KINDS))
    )  # fmt: skip
    if since is not None:
        query = query.where(p.c.occurred_at >= since)
    if until is not None:
        query = query.where(p.c.occurred_at < until)
    if written_after:
        named = sorted(written_after)
        query = query.where(
            or_(
                e.c.chain_id.not_in(named),
                *(and_(e.c.chain_id == c, e.c.chain_seq > written_after[c]) for c in named),
            )
        )
    return conn.execute(query)


def _lowest_heads(closes: Iterable[Close]) -> dict[int, int]:
    """Per chain, the lowest head among ``closes``; a chain some close lacks is left out."""
    closes = list(closes)
    common = set.intersection(*(set(c.heads) for c in closes)) if closes else set()
    return {chain: min(c.heads[chain].seq for c in closes) for chain in common}


def _aggregate(
    rows: Iterable[Any], hours: int, closes: Mapping[str, Close], only: Window | None = None
) -> dict[Window, WindowReport]:
    reports: dict[Window, WindowReport] = {}
    lines: dict[tuple[Window, str, str], PositionLine] = {}
    seen: set[tuple[Window, str, str, str]] = set()
    for r in rows:
        business = Window.containing(r.occurred_at, hours)
        window = effective_window(business, r.chain_id, r.chain_seq, closes)
        if window != business and (only is None or business == only):
            report = reports.setdefault(business, WindowReport(business))
            if (business, r.posting_id, "out", "") not in seen:
                seen.add((business, r.posting_id, "out", ""))
                report.carried_out_postings += 1
        if only is not None and window != only:
            continue
        reports.setdefault(window, WindowReport(window))
        key = (window, r.bank_code, r.currency)
        line = lines.get(key)
        if line is None:
            line = lines[key] = PositionLine(r.bank_code, r.name, r.currency)
            reports[window].lines.append(line)
        if r.amount_minor > 0:
            line.gross_debits_minor += r.amount_minor
        else:
            line.gross_credits_minor -= r.amount_minor
        if (window, r.posting_id, r.bank_code, r.currency) not in seen:
            seen.add((window, r.posting_id, r.bank_code, r.currency))
            line.postings += 1
            if window != business:
                line.carried_in_postings += 1
    for report in reports.values():
        report.lines.sort(key=lambda x: (x.bank_code, x.currency))
    return reports


def window_report(conn: Connection, window: Window, closing: Close | None = None) -> WindowReport:
    """Positions of one window: its own postings (less carried-out ones) plus carried-in ones.

    ``closing``: the close being recorded, so the positions follow the heads it records.
    """
    closes = read_closes(conn, window.hours)
    if closing is not None:
        closes[window.label] = closing
    rows = list(_settlement_entries(conn, window.start, window.end))
    earlier = [c for c in closes.values() if c.window < window]
    if earlier:  # late postings of closed windows before this one may be carried in
        rows += list(_settlement_entries(conn, None, window.start, _lowest_heads(earlier)))
    report = _aggregate(rows, window.hours, closes, only=window).get(window) or WindowReport(window)
    return _with_close(conn, report, closes)


def all_window_reports(conn: Connection, hours: int = DEFAULT_WINDOW_HOURS) -> list[WindowReport]:
    """Every window that has interbank postings (or a close), in one pass over the entries."""
    closes = read_closes(conn, hours)
    reports = _aggregate(_settlement_entries(conn, None, None), hours, closes)
    for close in closes.values():
        reports.setdefault(close.window, WindowReport(close.window))
    if len(reports) > MAX_WINDOWS_LISTED:
        raise WindowError(f"{len(reports)} windows: more than {MAX_WINDOWS_LISTED}; ask for one")
    return [_with_close(conn, reports[w], closes) for w in sorted(reports)]


def _with_close(
    conn: Connection, report: WindowReport, closes: Mapping[str, Close]
) -> WindowReport:
    report.close = closes.get(report.window.label)
    if report.close is not None:
        report.recorded = _recorded_positions(conn, report.window.label)
    return report


@dataclass(frozen=True)
class NetPosition:
    bank_code: str
    bank_name: str
    currency: str
    gross_debits_minor: int  # the bank's customers paid out to other banks
    gross_credits_minor: int  # other banks' customers paid in to this bank
    net_minor: int  # credits - debits: positive, the switch owes the bank


def net_positions(
    conn: Connection, window: Window | None = None, bank_code: str | None = None
) -> list[NetPosition]:
    """Each bank's position in ``window`` by the rule above, or over every window (None).

    ``bank_code``: that bank's lines only (what a bank may see of the positions).
    """
    if window is not None:
        lines = window_report(conn, window).lines
    else:
        lines = _totals(_settlement_entries(conn, None, None))
    return [
        NetPosition(x.bank_code, x.bank_name, x.currency, x.gross_debits_minor,
                    x.gross_credits_minor, x.net_minor)
        for x in lines
        if bank_code is None or x.bank_code == bank_code
    ]  # fmt: skip


def _totals(rows: Iterable[Any]) -> list[PositionLine]:
    """Every interbank entry summed per bank and currency: where it counts does not matter."""
    lines: dict[tuple[str, str], PositionLine] = {}
    for r in rows:
        line = lines.get((r.bank_code, r.currency))
        if line is None:
            line = lines[(r.bank_code, r.currency)] = PositionLine(r.bank_code, r.name, r.currency)
        if r.amount_minor > 0:
            line.gross_debits_minor += r.amount_minor
        else:
            line.gross_credits_minor -= r.amount_minor
    return [lines[k] for k in sorted(lines)]
