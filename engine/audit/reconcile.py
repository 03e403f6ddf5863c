"""Compare a replayed ledger with the live one: payments, postings, dead letters, balances.

Scope. A replay records the offsets it read; the live payments in scope are the
ones whose ``PaymentInitiated`` the live validator handled at those offsets
(``handled_events`` keeps topic, partition and offset), so both sides cover the
same events whatever the time zone, clock or selection. ``--from/--to`` narrow
both sides further by ``occurred_at``. Without a recorded run every payment is in
scope.

Balances. Movements (the sum of each account's entries in the scope's postings)
are compared on every run. Whole balances are compared only when they can agree:
the replay started at the beginning of every partition and the live ledger has
no payment outside the scope. On every run each side's balances are checked
against its own entries.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, or_, select

from engine.audit.replay import RecordedRun, recorded_runs
from engine.audit.times import as_utc
from engine.ledger.balances import all_balances
from engine.ledger.models import DeadLetter, HandledEvent, LedgerEntry, Payment, Posting
from engine.ledger.queries import chunks

MAX_ORPHANS_LISTED = 10_000
PAYMENT_FIELDS = (
    "state",
    "reason_code",
    "amount_minor",
    "currency",
    "fee_minor",
    "payer_bank",
    "payer_account",
    "payee_bank",
    "payee_account",
    "channel",
    "payment_type",
    "bank_reference",
    "occurred_at",
    "posting_id",
    "settlement_window",
    "initiated_event_id",
    "egov_service",
    "merchant_category_code",
)
DIFFERENCE_KIND = {
    "state": "outcome",
    "reason_code": "outcome",
    "amount_minor": "amount",
    "currency": "amount",
    "fee_minor": "fee",
    "payer_bank": "parties",
    "payer_account": "parties",
    "payee_bank": "parties",
    "payee_account": "parties",
    "settlement_window": "window",
    "posting_id": "posting",
}


@dataclass
class ReconcileReport:
    scope: str
    balances_compared: bool
    balances_note: str
    live_payments: int = 0
    replay_payments: int = 0
    matched: int = 0
    payments: list[dict[str, Any]] = field(default_factory=list)
    postings: list[dict[str, Any]] = field(default_factory=list)
    balances: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    orphan_postings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def differences(self) -> int:
        return (len(self.payments) + len(self.postings) + len(self.balances)
                + len(self.dead_letters) + len(self.orphan_postings))  # fmt: skip

    @property
    def ok(self) -> bool:
        return self.differences == 0

    def summary(self) -> dict[str, Any]:
        kinds = Counter(d["difference"] for d in self.payments)
        return {
            "ok": self.ok, "scope": self.scope, "live_payments": self.live_payments,
            "replay_payments": self.replay_payments, "matched": self.matched,
            "missing_in_live": kinds["missing_in_live"],
            "missing_in_replay": kinds["missing_in_replay"],
            "different_outcome": kinds["outcome"], "different_amount": kinds["amount"],
            "different_fee": kinds["fee"],
            "other_payment_differences": sum(v for k, v in kinds.items() if k not in {
                "missing_in_live", "missing_in_replay", "outcome", "amount", "fee"}),
            "posting_differences": len(self.postings), "balance_differences": len(self.balances),
            "balances_compared": self.balances_compared, "balances_note": self.balances_note,
            "dead_letter_differences": len(self.dead_letters),
            "orphan_postings": len(self.orphan_postings), "differences": self.differences,
        }  # fmt: skip

    def sections(self) -> dict[str, list[dict[str, Any]]]:
        return {
            "payments": self.payments,
            "postings": self.postings,
            "balances": self.balances,
            "dead_letters": self.dead_letters,
            "orphan_postings": self.orphan_postings,
        }


def reconcile(
    live: Engine,
    replayed: Engine,
    from_time: datetime | None = None,
    to_time: datetime | None = None,
) -> ReconcileReport:
    with live.connect() as lc, replayed.connect() as rc:
        runs = recorded_runs(rc)
        live_ids, scope = _live_scope(lc, runs)
        replay_ids = set(rc.execute(select(Payment.__table__.c.payment_id)).scalars())
        live_rows = _payments(lc, live_ids)
        replay_rows = _payments(rc, replay_ids)
        if from_time or to_time:
            scope += f"; occurred_at in [{from_time or '-inf'}, {to_time or '+inf'})"
            live_rows = _in_time(live_rows, from_time, to_time)
            replay_rows = _in_time(replay_rows, from_time, to_time)
        comparable, note = _balances_comparable(
            lc, runs, len(live_rows), bool(from_time or to_time)
        )
        report = ReconcileReport(scope, comparable, note, len(live_rows), len(replay_rows))
        _compare_payments(report, live_rows, replay_rows)
        live_legs = _legs(lc, [r["posting_id"] for r in live_rows.values() if r["posting_id"]])
        replay_legs = _legs(rc, [r["posting_id"] for r in replay_rows.values() if r["posting_id"]])
        _compare_postings(report, live_rows, replay_rows, live_legs, replay_legs)
        _compare_posting_headers(report, lc, rc, live_rows, replay_rows)
        if comparable:
            _compare_openings(report, lc, rc)
        _compare_balances(report, lc, rc, live_legs, replay_legs)
        _compare_dead_letters(report, lc, rc, runs)
        report.orphan_postings = [{"side": "live", **o} for o in _orphans(lc)] + \
            [{"side": "replay", **o} for o in _orphans(rc)]  # fmt: skip
    return report


def _live_scope(conn: Connection, runs: list[RecordedRun]) -> tuple[set[str], str]:
    if not runs:
        return set(conn.execute(select(Payment.__table__.c.payment_id)).scalars()), \
            "every payment (the replay ledger records no run)"  # fmt: skip
    h = HandledEvent.__table__
    ids: set[str] = set()
    parts = []
    for run in runs:
        for r in run.ranges:
            if r["start"] >= r["end"]:
                continue
            ids.update(conn.execute(
                select(h.c.payment_id).where(
                    h.c.consumer == "validator", h.c.topic == run.topic,
                    h.c.partition == r["partition"], h.c.offset >= r["start"],
                    h.c.offset < r["end"], h.c.payment_id.is_not(None))
            ).scalars())  # fmt: skip
            parts.append(f"{r['partition']}:[{r['start']},{r['end']})")
    selection = runs[-1].selection
    if selection == "occurred-at":
        # The slice was widened; the replay kept only events that occurred in range.
        rows = _payments(conn, ids)
        ids = set(_in_time(rows, runs[-1].from_time, runs[-1].to_time))
    return ids, f"{runs[-1].topic} offsets {' '.join(parts) or '(none)'} ({selection})"


def _payments(conn: Connection, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    p = Payment.__table__
    rows: dict[str, dict[str, Any]] = {}
    for chunk in chunks(sorted(ids)):
        for r in conn.execute(select(p).where(p.c.payment_id.in_(chunk))).mappings():
            row = dict(r)
            row["occurred_at"] = as_utc(row["occurred_at"])
            rows[row["payment_id"]] = row
    return rows


def _in_time(
    rows: dict[str, dict[str, Any]], lo: datetime | None, hi: datetime | None
) -> dict[str, dict[str, Any]]:
    lo, hi = (as_utc(lo) if lo else None), (as_utc(hi) if hi else None)
    return {
        k: v
        for k, v in rows.items()
        if (lo is None or v["occurred_at"] >= lo) and (hi is None or v["occurred_at"] < hi)
    }


def _balances_comparable(
    conn: Connection, runs: list[RecordedRun], in_scope: int, narrowed: bool
) -> tuple[bool, str]:
    total = conn.execute(select(func.count()).select_from(Payment.__table__)).scalar_one()
    if narrowed:
        return False, "a --from/--to range was given: movements in scope compared, not balances"
    if runs and not all(run.from_beginning for run in runs):
        return False, (
            "the replay did not start at the beginning of every partition: opening "
            "balances differ, movements in scope compared instead"
        )
    if total != in_scope:
        return False, (
            f"the live ledger has {total - in_scope} payments outside the replay's "
            f"scope: movements in scope compared instead"
        )
    return True, "whole balances compared (the replay covers every live payment)"


def _compare_payments(
    report: ReconcileReport, live: dict[str, dict[str, Any]], replayed: dict[str, dict[str, Any]]
) -> None:
    for pid in sorted(set(live) | set(replayed)):
        a, b = live.get(pid), replayed.get(pid)
        if a is None or b is None:
            kind = "missing_in_live" if a is None else "missing_in_replay"
            row = a or b or {}
            report.payments.append(
                {
                    "payment_id": pid,
                    "difference": kind,
                    "field": "",
                    "live": row.get("state") if a else None,
                    "replay": row.get("state") if b else None,
                }
            )
            continue
        report.matched += 1
        for name in PAYMENT_FIELDS:
            if a[name] != b[name]:
                report.payments.append(
                    {
                        "payment_id": pid,
                        "difference": DIFFERENCE_KIND.get(name, "other"),
                        "field": name,
                        "live": a[name],
                        "replay": b[name],
                    }
                )


def _legs(conn: Connection, posting_ids: Sequence[str]) -> dict[str, Counter[tuple[str, int, str]]]:
    e = LedgerEntry.__table__
    legs: dict[str, Counter[tuple[str, int, str]]] = defaultdict(Counter)
    for chunk in chunks(sorted(posting_ids)):
        rows = conn.execute(
            select(e.c.posting_id, e.c.account_number, e.c.amount_minor, e.c.currency).where(
                e.c.posting_id.in_(chunk)
            )
        )
        for r in rows:
            legs[r.posting_id][(r.account_number, int(r.amount_minor), r.currency)] += 1
    return legs


def _compare_postings(
    report: ReconcileReport,
    live: dict[str, dict[str, Any]],
    replayed: dict[str, dict[str, Any]],
    live_legs: dict[str, Counter[Any]],
    replay_legs: dict[str, Counter[Any]],
) -> None:
    for pid in sorted(set(live) & set(replayed)):
        posting = live[pid]["posting_id"] or replayed[pid]["posting_id"]
        if posting is None:
            continue
        a = live_legs.get(live[pid]["posting_id"] or "", Counter())
        b = replay_legs.get(replayed[pid]["posting_id"] or "", Counter())
        if a == b:
            continue
        for (account, amount, currency), n in sorted((a - b).items()):
            report.postings.append(
                {
                    "payment_id": pid,
                    "posting_id": posting,
                    "side": "live only",
                    "account_number": account,
                    "amount_minor": amount,
                    "currency": currency,
                    "entries": n,
                }
            )
        for (account, amount, currency), n in sorted((b - a).items()):
            report.postings.append(
                {
                    "payment_id": pid,
                    "posting_id": posting,
                    "side": "replay only",
                    "account_number": account,
                    "amount_minor": amount,
                    "currency": currency,
                    "entries": n,
                }
            )


def _headers(conn: Connection, posting_ids: Sequence[str]) -> dict[str, tuple[Any, ...]]:
    po = Posting.__table__
    found: dict[str, tuple[Any, ...]] = {}
    for chunk in chunks(sorted(posting_ids)):
        for r in conn.execute(select(po).where(po.c.posting_id.in_(chunk))):
            found[r.posting_id] = (r.payment_id, r.kind, as_utc(r.occurred_at), r.settlement_window)
    return found


def _compare_posting_headers(
    report: ReconcileReport,
    lc: Connection,
    rc: Connection,
    live: dict[str, dict[str, Any]],
    replayed: dict[str, dict[str, Any]],
) -> None:
    ids = sorted(
        {r["posting_id"] for r in live.values() if r["posting_id"]}
        | {r["posting_id"] for r in replayed.values() if r["posting_id"]}
    )
    a, b = _headers(lc, ids), _headers(rc, ids)
    names = ("payment_id", "kind", "occurred_at", "settlement_window")
    for posting in ids:
        if posting not in a or posting not in b:
            side = "missing in live" if posting not in a else "missing in replay"
            report.postings.append({"posting_id": posting, "side": side})
            continue
        for name, x, y in zip(names, a[posting], b[posting], strict=True):
            if x != y:
                report.postings.append(
                    {"posting_id": posting, "side": "both", "field": name, "live": x, "replay": y}
                )


def _compare_openings(report: ReconcileReport, lc: Connection, rc: Connection) -> None:
    """Opening balances, when both sides should hold the same (a replay from the beginning)."""
    po = Posting.__table__
    query = select(po.c.posting_id).where(po.c.kind == "OPENING")
    a = _legs(lc, list(lc.execute(query).scalars()))
    b = _legs(rc, list(rc.execute(query).scalars()))
    for posting in sorted(set(a) | set(b)):
        if a.get(posting, Counter()) != b.get(posting, Counter()):
            report.postings.append(
                {
                    "posting_id": posting,
                    "side": "both",
                    "field": "opening legs",
                    "live": sorted(a.get(posting, Counter()).elements()),
                    "replay": sorted(b.get(posting, Counter()).elements()),
                }
            )


def _movements(legs: dict[str, Counter[tuple[str, int, str]]]) -> dict[str, int]:
    moved: dict[str, int] = defaultdict(int)
    for counter in legs.values():
        for (account, amount, _currency), n in counter.items():
            moved[account] += amount * n
    return moved


def _balances(conn: Connection) -> dict[str, tuple[int, int]]:
    """account -> (balance_minor, sum of its entries)."""
    e = LedgerEntry.__table__
    sums = dict(
        conn.execute(
            select(e.c.account_number, func.sum(e.c.amount_minor)).group_by(e.c.account_number)
        ).all()
    )
    return {n: (b, int(sums.get(n) or 0)) for n, b in all_balances(conn).items()}


def _compare_balances(
    report: ReconcileReport,
    lc: Connection,
    rc: Connection,
    live_legs: dict[str, Counter[Any]],
    replay_legs: dict[str, Counter[Any]],
) -> None:
    live_moved, replay_moved = _movements(live_legs), _movements(replay_legs)
    live_bal, replay_bal = _balances(lc), _balances(rc)
    for account in sorted(set(live_bal) | set(replay_bal) | set(live_moved) | set(replay_moved)):
        lb, le = live_bal.get(account, (0, 0))
        rb, re_ = replay_bal.get(account, (0, 0))
        problems = []
        if live_moved.get(account, 0) != replay_moved.get(account, 0):
            problems.append("movement in scope")
        if lb != le:
            problems.append("live balance != its entries")
        if rb != re_:
            problems.append("replay balance != its entries")
        if report.balances_compared and lb != rb:
            problems.append("balance")
        if account not in live_bal or account not in replay_bal:
            problems.append(
                "account missing in " + ("live" if account not in live_bal else "replay")
            )
        if problems:
            report.balances.append({
                "account_number": account, "difference": "; ".join(problems),
                "live_balance_minor": lb, "replay_balance_minor": rb,
                "live_entries_sum_minor": le, "replay_entries_sum_minor": re_,
                "live_movement_minor": live_moved.get(account, 0),
                "replay_movement_minor": replay_moved.get(account, 0),
            })  # fmt: skip


def _dead_letter_keys(conn: Connection, runs: list[RecordedRun]) -> set[tuple[int, int, str]]:
    d = DeadLetter.__table__
    query = select(d.c.source_partition, d.c.source_offset, d.c.kind).where(
        d.c.consumer == "validator"
    )
    if runs:
        conditions = [and_(d.c.source_topic == run.topic, d.c.source_partition == r["partition"],
                           d.c.source_offset >= r["start"], d.c.source_offset < r["end"])
                      for run in runs for r in run.ranges if r["start"] < r["end"]]  # fmt: skip
        if not conditions:
            return set()
        query = query.where(or_(*conditions))
    return {(r.source_partition, r.source_offset, r.kind) for r in conn.execute(query)}


def _compare_dead_letters(
    report: ReconcileReport, lc: Connection, rc: Connection, runs: list[RecordedRun]
) -> None:
    if runs and runs[-1].selection == "occurred-at":
        return  # an undecodable message has no occurred_at: the two sides' scopes differ
    live, replayed = _dead_letter_keys(lc, runs), _dead_letter_keys(rc, runs)
    for partition, offset, kind in sorted(live - replayed):
        report.dead_letters.append(
            {"side": "live only", "partition": partition, "offset": offset, "kind": kind}
        )
    for partition, offset, kind in sorted(replayed - live):
        report.dead_letters.append(
            {"side": "replay only", "partition": partition, "offset": offset, "kind": kind}
        )


def _orphans(conn: Connection) -> list[dict[str, Any]]:
    """Payment postings that no settled payment points at (inserted by hand, or left behind)."""
    po, p = Posting.__table__, Payment.__table__
    rows = conn.execute(
        select(po.c.posting_id, po.c.payment_id, po.c.kind, po.c.settlement_window)
        .join(p, p.c.payment_id == po.c.payment_id, isouter=True)  # the primary key: no scan
        .where(po.c.kind != "OPENING",
               or_(p.c.payment_id.is_(None), p.c.state != "SETTLED", p.c.posting_id.is_(None),
                   p.c.posting_id != po.c.posting_id))
        .limit(MAX_ORPHANS_LISTED)
    )  # fmt: skip
    return [dict(r._mapping) for r in rows]
