"""Compare a replayed ledger with the live one: payments, holds, steps, postings, dead
letters, balances.

Scope. A replay records the offsets it read; the live payments in scope are the
ones whose ``PaymentInitiated`` the live validator handled at those offsets
(``handled_events`` keeps topic, partition and offset), so both sides cover the
same events whatever the time zone, clock or selection. ``--from/--to`` narrow
both sides further by ``occurred_at``. Without a recorded run every payment is in
scope. A payment's life is in scope with it: its hold, the steps whose requests
were read (and its expiry, which the replay reads from payments.validated), and
the postings of the payment and of those steps.

Balances. Movements (the sum of each account's entries in the scope's postings)
are compared on every run. Whole balances are compared only when they can agree:
the replay started at the beginning of every partition and the live ledger has
no payment outside the scope. On every run each side's balances are checked
against its own entries.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, or_, select

from engine.audit.replay import RecordedRun, recorded_runs
from engine.domain.machine import reachable
from engine.domain.outcomes import StepOutcome
from engine.domain.states import PaymentState
from engine.domain.steps import STEPS
from engine.events import SWITCH
from engine.ledger.balances import all_balances
from engine.ledger.models import (
    BankPosition,
    DeadLetter,
    HandledEvent,
    LedgerEntry,
    LiquidityMovement,
    Payment,
    PaymentStep,
    Posting,
)
from engine.ledger.queries import chunks, select_in
from engine.read.rows import hold_rows, payment_rows, step_rows
from engine.times import as_utc
from engine.topology import Topology

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
    "intent",
    "captured_minor",
    "refunded_minor",
)
HOLD_FIELDS = (
    "account_number", "bank_code", "currency", "amount_minor", "fee_minor", "reserved_minor",
    "captured_minor", "state", "occurred_at", "expires_at", "resolved_at", "resolved_by",
)  # fmt: skip
# reason_message is left out, as for payments: its text may quote a balance.
STEP_FIELDS = (
    "payment_id", "kind", "sender_bank", "bank_reference", "occurred_at", "amount_minor",
    "fee_minor", "currency", "outcome", "reason_code", "posting_id", "settlement_window",
)  # fmt: skip
TIMES = frozenset({"occurred_at", "expires_at", "resolved_at"})
# A one-step payment posted as one PAYMENT: settled, or refunded or returned since.
SETTLED_SALE = frozenset(str(s) for s in reachable(frozenset({PaymentState.SETTLED})))
# A step posting's kind -> the states its payment may be in once it was applied.
STEP_POSTING_STATES = {
    s.posting_kind: s.states_after for s in STEPS.values() if s.posting_kind is not None
}
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
    "intent": "outcome",
    "captured_minor": "amount",
    "refunded_minor": "amount",
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
    holds: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    postings: list[dict[str, Any]] = field(default_factory=list)
    balances: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    orphan_postings: list[dict[str, Any]] = field(default_factory=list)
    movements: list[dict[str, Any]] = field(default_factory=list)  # FundsIn / FundsOut
    positions: list[dict[str, Any]] = field(default_factory=list)  # banks' position rows

    @property
    def differences(self) -> int:
        return (len(self.payments) + len(self.holds) + len(self.steps) + len(self.postings)
                + len(self.balances) + len(self.dead_letters)
                + len(self.orphan_postings) + len(self.movements)
                + len(self.positions))  # fmt: skip

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
            "hold_differences": len(self.holds), "step_differences": len(self.steps),
            "posting_differences": len(self.postings), "balance_differences": len(self.balances),
            "balances_compared": self.balances_compared, "balances_note": self.balances_note,
            "dead_letter_differences": len(self.dead_letters),
            "orphan_postings": len(self.orphan_postings),
            "movement_differences": len(self.movements),
            "position_differences": len(self.positions), "differences": self.differences,
        }  # fmt: skip

    def sections(self) -> dict[str, list[dict[str, Any]]]:
        return {
            "payments": self.payments,
            "holds": self.holds,
            "steps": self.steps,
            "postings": self.postings,
            "balances": self.balances,
            "dead_letters": self.dead_letters,
            "orphan_postings": self.orphan_postings,
            "movements": self.movements,
            "positions": self.positions,
        }


def reconcile(
    live: Engine,
    replayed: Engine,
    topology: Topology,
    from_time: datetime | None = None,
    to_time: datetime | None = None,
) -> ReconcileReport:
    """Compare ``replayed`` (a replay's ledger) with ``live``; ``topology`` names the stage
    that reads what banks send (the validator), whose handled events scope the run."""
    entry = topology.entry.name
    with live.connect() as lc, replayed.connect() as rc:
        runs = recorded_runs(rc)
        scope = _live_scope(lc, runs, entry)
        replay_ids = set(rc.execute(select(Payment.__table__.c.payment_id)).scalars())
        live_rows = _payments(lc, scope.payment_ids)
        replay_rows = _payments(rc, replay_ids)
        narrowed = bool(from_time or to_time)
        if narrowed:
            scope.text += f"; occurred_at in [{from_time or '-inf'}, {to_time or '+inf'})"
            live_rows = _in_time(live_rows, from_time, to_time)
            replay_rows = _in_time(replay_rows, from_time, to_time)
        live_steps = _steps(lc, scope.steps_of(live_rows if narrowed else None), entry)
        replay_steps = _steps(rc, StepScope(set(replay_rows)) if narrowed else None, entry)
        comparable, note = _balances_comparable(lc, runs, len(live_rows), narrowed)
        report = ReconcileReport(scope.text, comparable, note, len(live_rows), len(replay_rows))
        _compare_payments(report, live_rows, replay_rows)
        _compare_holds(report, _holds(lc, live_rows), _holds(rc, replay_rows))
        _compare_steps(report, live_steps, replay_steps)
        live_postings = _posting_owners(live_rows, live_steps)
        replay_postings = _posting_owners(replay_rows, replay_steps)
        live_legs = _legs(lc, list(live_postings))
        replay_legs = _legs(rc, list(replay_postings))
        _compare_postings(report, live_postings, replay_postings, live_legs, replay_legs)
        _compare_posting_headers(report, lc, rc, live_postings, replay_postings)
        if comparable:
            _compare_openings(report, lc, rc)
        _compare_balances(report, lc, rc, live_legs, replay_legs)
        if comparable:
            _compare_liquidity(report, lc, rc)
        _compare_dead_letters(report, lc, rc, runs, entry)
        report.orphan_postings = [{"side": "live", **o} for o in _orphans(lc)] + \
            [{"side": "replay", **o} for o in _orphans(rc)]  # fmt: skip
    return report


@dataclass
class LiveScope:
    """The live side of a replay: its payments and the events of their lives it read.

    ``event_ids`` are the events the live validator handled at the replayed offsets
    (payments and the steps banks asked); ``None`` when every event is in scope.
    ``occurred`` is the replay's own ``occurred_at`` filter (``--by occurred-at``).
    """

    payment_ids: set[str]
    text: str
    event_ids: set[str] | None = None
    occurred: tuple[datetime | None, datetime | None] = (None, None)

    def steps_of(self, rows: dict[str, dict[str, Any]] | None) -> StepScope:
        ids = set(rows) if rows is not None else self.payment_ids
        return StepScope(ids, self.event_ids, self.occurred)


@dataclass(frozen=True)
class StepScope:
    """Steps in scope: those of these payments, less those whose request was read elsewhere.

    A bank's step is in scope when its request was read (its step id is the request's
    event id) and, for a replay ``--by occurred-at``, occurred in its range; a step whose
    request no validator ever read (forged into the ledger) is in scope too, so it is
    found; an expiry, which no bank sends, when its payment is (the replay reads it from
    payments.validated for every payment it replayed).
    """

    payment_ids: set[str]
    event_ids: set[str] | None = None
    occurred: tuple[datetime | None, datetime | None] = (None, None)

    def read_here(self, row: dict[str, Any]) -> bool:
        """The step came with the events in scope (or from the switch)."""
        if row["sender_bank"] == SWITCH:
            return True
        lo, hi = self.occurred
        at = row["occurred_at"]
        in_time = (lo is None or at >= as_utc(lo)) and (hi is None or at < as_utc(hi))
        return in_time and (self.event_ids is None or row["step_id"] in self.event_ids)


def _live_scope(conn: Connection, runs: list[RecordedRun], entry: str) -> LiveScope:
    if not runs:
        return LiveScope(set(conn.execute(select(Payment.__table__.c.payment_id)).scalars()),
                         "every payment (the replay ledger records no run)")  # fmt: skip
    h = HandledEvent.__table__
    ids: set[str] = set()
    events: set[str] = set()
    parts = []
    for run in runs:
        for r in run.ranges:
            if r["start"] >= r["end"]:
                continue
            rows = conn.execute(
                select(h.c.payment_id, h.c.event_id).where(
                    h.c.consumer == entry, h.c.topic == run.topic,
                    h.c.partition == r["partition"], h.c.offset >= r["start"],
                    h.c.offset < r["end"], h.c.payment_id.is_not(None))
            ).all()  # fmt: skip
            ids.update(row.payment_id for row in rows)
            events.update(row.event_id for row in rows)
            parts.append(f"{r['partition']}:[{r['start']},{r['end']})")
    selection = runs[-1].selection
    if selection == "occurred-at":
        # The slice was widened; the replay kept only events that occurred in range.
        found = _payments(conn, ids)
        ids = set(_in_time(found, runs[-1].from_time, runs[-1].to_time))
        occurred = (runs[-1].from_time, runs[-1].to_time)
    else:
        occurred = (None, None)
    text = f"{runs[-1].topic} offsets {' '.join(parts) or '(none)'} ({selection})"
    return LiveScope(ids, text, events, occurred)


def _payments(conn: Connection, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    return payment_rows(conn, ids)


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


Rows = dict[str, dict[str, Any]]


def _differences(
    live: Rows, replayed: Rows, fields: Sequence[str]
) -> Iterator[tuple[str, dict[str, Any] | None, dict[str, Any] | None, str | None]]:
    """(key, live row, replay row, field) of every difference; field None: a side lacks it.

    A key on both sides with no field different yields ``(key, row, row, "")`` once, so
    the caller can count the matches.
    """
    for key in sorted(set(live) | set(replayed)):
        a, b = live.get(key), replayed.get(key)
        if a is None or b is None:
            yield key, a, b, None
            continue
        yield key, a, b, ""
        for name in fields:
            if a[name] != b[name]:
                yield key, a, b, name


def _compare_payments(report: ReconcileReport, live: Rows, replayed: Rows) -> None:
    for pid, a, b, name in _differences(live, replayed, PAYMENT_FIELDS):
        if name == "":
            report.matched += 1
        elif name is None:
            kind = "missing_in_live" if a is None else "missing_in_replay"
            report.payments.append({
                "payment_id": pid, "difference": kind, "field": "",
                "live": a["state"] if a else None, "replay": b["state"] if b else None,
            })  # fmt: skip
        else:
            assert a is not None and b is not None
            report.payments.append({
                "payment_id": pid, "difference": DIFFERENCE_KIND.get(name, "other"), "field": name,
                "live": a[name], "replay": b[name],
            })  # fmt: skip


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
    live: dict[str, str],
    replayed: dict[str, str],
    live_legs: dict[str, Counter[Any]],
    replay_legs: dict[str, Counter[Any]],
) -> None:
    """The legs of every posting in scope on either side: what is on one side only."""
    for posting in sorted(set(live) | set(replayed)):
        a = live_legs.get(posting, Counter())
        b = replay_legs.get(posting, Counter())
        if a == b:
            continue
        pid = live.get(posting) or replayed.get(posting)
        for side, diff in (("live only", a - b), ("replay only", b - a)):
            for (account, amount, currency), n in sorted(diff.items()):
                report.postings.append({
                    "payment_id": pid, "posting_id": posting, "side": side,
                    "account_number": account, "amount_minor": amount, "currency": currency,
                    "entries": n,
                })  # fmt: skip


def _posting_owners(
    payments: dict[str, dict[str, Any]], steps: dict[str, dict[str, Any]]
) -> dict[str, str]:
    """posting id -> payment id, for the postings in scope: each payment's own and its steps'."""
    owners = {r["posting_id"]: pid for pid, r in payments.items() if r["posting_id"]}
    owners.update({r["posting_id"]: r["payment_id"] for r in steps.values() if r["posting_id"]})
    return owners


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
    live: dict[str, str],
    replayed: dict[str, str],
) -> None:
    ids = sorted(set(live) | set(replayed))
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


def _holds(conn: Connection, payments: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The holds of these payments (authorizations only have one)."""
    return hold_rows(conn, [pid for pid, r in payments.items() if r["intent"] == "AUTHORIZATION"])


def _steps(conn: Connection, scope: StepScope | None, entry: str) -> dict[str, dict[str, Any]]:
    """step id -> its row, for the steps in ``scope`` (every step: ``None``)."""
    if scope is None:
        return {r["step_id"]: r for r in step_rows(conn, None)}
    rows = step_rows(conn, scope.payment_ids)
    outside = [r["step_id"] for r in rows if not scope.read_here(r)]
    elsewhere = _read_by_entry(conn, outside, entry)
    return {r["step_id"]: r for r in rows if r["step_id"] not in elsewhere}


def _read_by_entry(conn: Connection, event_ids: Sequence[str], entry: str) -> set[str]:
    """Those of ``event_ids`` the entry stage (the validator) handled (at offsets outside
    the replay's)."""
    h = HandledEvent.__table__
    query = select(h.c.event_id).where(h.c.consumer == entry)
    return {r.event_id for r in select_in(conn, query, h.c.event_id, event_ids)}


def _compare_holds(report: ReconcileReport, live: Rows, replayed: Rows) -> None:
    for pid, a, b, name in _differences(live, replayed, HOLD_FIELDS):
        if name is None:
            side = "missing in live" if a is None else "missing in replay"
            report.holds.append({"payment_id": pid, "difference": side})
        elif name:
            assert a is not None and b is not None
            report.holds.append(
                {"payment_id": pid, "difference": name, "live": a[name], "replay": b[name]}
            )


def _compare_steps(report: ReconcileReport, live: Rows, replayed: Rows) -> None:
    """Every step on each side by its id (the bank's request, or the expiry's own)."""
    for step_id, a, b, name in _differences(live, replayed, STEP_FIELDS):
        row = a or b or {}
        found = {"step_id": step_id, "payment_id": row.get("payment_id"), "kind": row.get("kind")}
        if name is None:
            report.steps.append({
                **found, "difference": "missing in live" if a is None else "missing in replay",
                "live": a["outcome"] if a else None, "replay": b["outcome"] if b else None,
            })  # fmt: skip
        elif name:
            assert a is not None and b is not None
            report.steps.append({**found, "difference": name, "live": a[name], "replay": b[name]})


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


def _dead_letter_keys(
    conn: Connection, runs: list[RecordedRun], entry: str
) -> set[tuple[int, int, str]]:
    d = DeadLetter.__table__
    query = select(d.c.source_partition, d.c.source_offset, d.c.kind).where(d.c.consumer == entry)
    if runs:
        conditions = [and_(d.c.source_topic == run.topic, d.c.source_partition == r["partition"],
                           d.c.source_offset >= r["start"], d.c.source_offset < r["end"])
                      for run in runs for r in run.ranges if r["start"] < r["end"]]  # fmt: skip
        if not conditions:
            return set()
        query = query.where(or_(*conditions))
    return {(r.source_partition, r.source_offset, r.kind) for r in conn.execute(query)}


MOVEMENT_FIELDS = (
    "bank_code", "currency", "kind", "amount_minor", "outcome", "reason_code", "posting_id",
)  # fmt: skip
POSITION_FIELDS = ("posted_minor", "holds_minor", "liquidity_minor")


def _compare_liquidity(report: ReconcileReport, lc: Connection, rc: Connection) -> None:
    """The banks' liquidity movements (posted or refused, with the reason) and position
    rows, when whole ledgers are compared: a replay reads every movement from the start of
    its topic, and a bank's position is the sum of everything it ever sent and received.
    A refusal's message is left out: it quotes the exposure at that instant."""
    m, bp = LiquidityMovement.__table__, BankPosition.__table__
    for section, table, key, fields in (
        (report.movements, m, ("movement_id",), MOVEMENT_FIELDS),
        (report.positions, bp, ("bank_code", "currency"), POSITION_FIELDS),
    ):
        live, again = _keyed(lc, table, key, fields), _keyed(rc, table, key, fields)
        for k in sorted(live.keys() | again.keys()):
            a, b = live.get(k), again.get(k)
            if a == b:
                continue
            names = [f for f in fields if a and b and a[f] != b[f]]
            side = "missing in replay" if b is None else "missing in live" if a is None else None
            section.append({"key": "/".join(k), "difference": side or ", ".join(names),
                            "live": a, "replay": b})  # fmt: skip


def _keyed(
    conn: Connection, table: Any, key: tuple[str, ...], fields: tuple[str, ...]
) -> dict[tuple[str, ...], dict[str, Any]]:
    rows = conn.execute(select(*(table.c[c] for c in (*key, *fields)))).mappings()
    return {tuple(str(r[c]) for c in key): {f: r[f] for f in fields} for r in rows}


def _compare_dead_letters(
    report: ReconcileReport, lc: Connection, rc: Connection, runs: list[RecordedRun], entry: str
) -> None:
    if runs and runs[-1].selection == "occurred-at":
        return  # an undecodable message has no occurred_at: the two sides' scopes differ
    live, replayed = _dead_letter_keys(lc, runs, entry), _dead_letter_keys(rc, runs, entry)
    for partition, offset, kind in sorted(live - replayed):
        report.dead_letters.append(
            {"side": "live only", "partition": partition, "offset": offset, "kind": kind}
        )
    for partition, offset, kind in sorted(replayed - live):
        report.dead_letters.append(
            {"side": "replay only", "partition": partition, "offset": offset, "kind": kind}
        )


def _movement_postings(conn: Connection) -> dict[str, tuple[str, str]]:
    """The postings of the liquidity movements recorded as posted: (movement id, kind)."""
    m = LiquidityMovement.__table__
    rows = conn.execute(
        select(m.c.posting_id, m.c.movement_id, m.c.kind).where(m.c.posting_id.is_not(None))
    )
    return {r.posting_id: (r.movement_id, r.kind) for r in rows}


def _orphans(conn: Connection) -> list[dict[str, Any]]:
    """Postings that nothing accounts for (inserted by hand, or left behind).

    A PAYMENT posting is accounted for by the settled payment that names it (settled,
    or refunded or returned since); a CAPTURE, REFUND or RETURN posting by the applied
    step of its kind and payment that names it, its payment in a state that step leaves
    it in (a capture: authorized, captured or refunded since; a refund: settled or
    captured when partial, refunded, or returned since when partial on a sale; a return:
    returned).
    """
    po, p = Posting.__table__, Payment.__table__
    rows = conn.execute(
        select(po.c.posting_id, po.c.payment_id, po.c.kind, po.c.settlement_window,
               p.c.state, p.c.posting_id.label("payment_posting"))
        .join(p, p.c.payment_id == po.c.payment_id, isouter=True)  # the primary key: no scan
        .where(po.c.kind != "OPENING",
               or_(po.c.kind != "PAYMENT", p.c.payment_id.is_(None),
                   p.c.state.not_in(sorted(SETTLED_SALE)), p.c.posting_id.is_(None),
                   p.c.posting_id != po.c.posting_id))
    )  # fmt: skip
    suspects = list(rows)
    owners = _step_postings(conn, [r.posting_id for r in suspects if r.kind != "PAYMENT"])
    moved = _movement_postings(conn)
    found = []
    for r in suspects:
        if r.kind in STEP_POSTING_STATES and _step_posting_ok(r, owners.get(r.posting_id)):
            continue
        if moved.get(r.posting_id) == (r.payment_id, r.kind):
            continue  # a bank's liquidity movement, recorded as posted
        found.append({"posting_id": r.posting_id, "payment_id": r.payment_id, "kind": r.kind,
                      "settlement_window": r.settlement_window})  # fmt: skip
        if len(found) >= MAX_ORPHANS_LISTED:
            break
    return found


def _step_postings(conn: Connection, posting_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
    """posting id -> (payment id, kind) of the applied step that names it."""
    st = PaymentStep.__table__
    owners: dict[str, tuple[str, str]] = {}
    for chunk in chunks(sorted(posting_ids)):
        query = select(st.c.posting_id, st.c.payment_id, st.c.kind).where(
            st.c.outcome == StepOutcome.APPLIED, st.c.posting_id.in_(chunk)
        )
        owners.update({r.posting_id: (r.payment_id, r.kind) for r in conn.execute(query)})
    return owners


def _step_posting_ok(row: Any, owner: tuple[str, str] | None) -> bool:
    return owner == (row.payment_id, row.kind) and row.state in STEP_POSTING_STATES[row.kind]
